//! `vsigner bench e2e --trace`: where the time of one operation goes, stage by stage, read
//! from the daemons' own spans.
//!
//! [`StageRecorder`] is a tracing layer that keeps, for every span of an operation (a span
//! with an `operation_id` field, or inside one), its device, name and when it opened and
//! closed. [`Stages::of`] turns the spans of one signature into its milestones, in the order
//! every device passes them:
//!
//! | stage | from → to |
//! |---|---|
//! | request | the operator sends `requestSignature` → the coordinator answers (operation stored, devices notified) |
//! | notify and list | → the device's `vote` span opens (MQTT notification, then its `operationsAwaitingVote` query) |
//! | vote checks | → `approval` opens (the organisation's devices, their signed records, the share's continuity) |
//! | approval | the approver (webhook or contract) decides |
//! | vote | the `vote` mutation (device-signed) |
//! | quorum to ready | → the device's `operation` span opens (the coordinator sees the quorum, notifies; the device lists ready operations) |
//! | run checks | → `run_mark` opens (committee keys, the approved request compared, a permit) |
//! | run mark | the durable mark that the device ran the operation (fsync); `startOperation` is sent only by a run still going after 250 ms, and waited for by nothing (it is in the coordinator calls); FROST signing runs its first round meanwhile |
//! | protocol | the protocol over MQTT after the mark (its rounds are listed apart) |
//! | submit | the result mutation, verified by the coordinator |
//! | result seen | → the operator's `waitForOperation` answers with the operation completed |
//!
//! A quorum and a protocol wait for the slowest member, so up to "run mark" a milestone is
//! when the *last* committee member passed it; the protocol's end and the submission are the
//! first submitter's (its submission completes the operation). Every device's milestones are
//! in this order, so the stages are never negative.
//!
//! For `vsigner bench soak` it also counts, from the same spans and the devices'
//! `presignature` events, how often each device ran each operation and took each
//! presignature.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// The stages, in order (see the module documentation).
pub(crate) const STAGES: [&str; 11] = [
    "request",
    "notify and list",
    "vote checks",
    "approval",
    "vote",
    "quorum to ready",
    "run checks",
    "run mark",
    "protocol",
    "submit",
    "result seen",
];

/// One closed span of an operation.
#[derive(Clone, Debug)]
struct SpanRecord {
    device: String,
    name: &'static str,
    round: Option<u64>,
    opened: Instant,
    closed: Instant,
}

/// What a span knows of its operation (inherited from its parents).
struct SpanInfo {
    call: Option<String>,
    operation: Option<String>,
    device: Option<String>,
    round: Option<u64>,
    opened: Instant,
}

#[derive(Default)]
struct Fields {
    call: Option<String>,
    operation: Option<String>,
    device: Option<String>,
    round: Option<u64>,
    presignature: Option<String>,
}

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "operation_id" => self.operation = Some(value.to_owned()),
            "device" => self.device = Some(value.to_owned()),
            "call" => self.call = Some(value.to_owned()),
            "presignature" => self.presignature = Some(value.to_owned()),
            _ => {}
        }
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        if field.name() == "round" {
            self.round = Some(value);
        }
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "operation_id" | "device" | "presignature" => self.record_str(field, &format!("{value:?}")),
            "round" => {
                if let Ok(r) = format!("{value:?}").parse() {
                    self.round = Some(r);
                }
            }
            _ => {}
        }
    }
}

/// The tracing layer that records operations' spans; cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct StageRecorder {
    spans: Arc<Mutex<HashMap<String, Vec<SpanRecord>>>>,
    /// How long each coordinator call took (`coordinator_call` spans), by call.
    calls: Arc<Mutex<HashMap<String, Vec<Duration>>>>,
    /// How often each device took each presignature (its `presignature` events), by
    /// (device, presignature).
    taken: Arc<Mutex<HashMap<(String, String), u32>>>,
}

impl StageRecorder {
    /// Takes the spans recorded for `operation` so far.
    fn take(&self, operation: &str) -> Vec<SpanRecord> {
        self.spans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(operation)
            .unwrap_or_default()
    }

    /// Puts back spans taken for `operation` (before any recorded since).
    fn put_back(&self, operation: &str, mut spans: Vec<SpanRecord>) {
        let mut all = self.spans.lock().unwrap_or_else(|p| p.into_inner());
        let entry = all.entry(operation.to_owned()).or_default();
        spans.append(entry);
        *entry = spans;
    }

    /// Takes the coordinator calls recorded so far.
    pub(crate) fn take_calls(&self) -> HashMap<String, Vec<Duration>> {
        std::mem::take(&mut *self.calls.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Takes how many times each device ran `operation`'s protocol (its `protocol` spans).
    pub(crate) fn runs_by_device(&self, operation: &str) -> HashMap<String, usize> {
        let mut runs = HashMap::new();
        for s in self.take(operation).iter().filter(|s| s.name == "protocol") {
            *runs.entry(s.device.clone()).or_default() += 1;
        }
        runs
    }

    /// Takes how many times each device took each presignature, by (device, presignature).
    pub(crate) fn presignatures_taken(&self) -> HashMap<(String, String), u32> {
        std::mem::take(&mut *self.taken.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Forgets everything recorded (operations that are not measured: keygens, presigns).
    pub(crate) fn clear(&self) {
        self.spans.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.taken.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

impl<S> Layer<S> for StageRecorder
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(parent) = span.parent() {
            if let Some(p) = parent.extensions().get::<SpanInfo>() {
                fields.operation = fields.operation.or_else(|| p.operation.clone());
                fields.device = fields.device.or_else(|| p.device.clone());
            }
        }
        span.extensions_mut().insert(SpanInfo {
            call: fields.call,
            operation: fields.operation,
            device: fields.device,
            round: fields.round,
            opened: Instant::now(),
        });
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().fields().field("presignature").is_none() {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        if let (Some(device), Some(presignature)) = (fields.device, fields.presignature) {
            *self
                .taken
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry((device, presignature))
                .or_default() += 1;
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let closed = Instant::now();
        let Some(span) = ctx.span(&id) else { return };
        let extensions = span.extensions();
        let Some(info) = extensions.get::<SpanInfo>() else {
            return;
        };
        if let Some(call) = &info.call {
            self.calls
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(call.clone())
                .or_default()
                .push(closed.saturating_duration_since(info.opened));
        }
        let (Some(operation), Some(device)) = (&info.operation, &info.device) else {
            return;
        };
        let record = SpanRecord {
            device: device.clone(),
            name: span.name(),
            round: info.round,
            opened: info.opened,
            closed,
        };
        self.spans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(operation.clone())
            .or_default()
            .push(record);
    }
}

/// The stage durations of one operation, in [`STAGES`] order, and its protocol rounds.
#[derive(Debug)]
pub(crate) struct Stages {
    pub(crate) stages: [Duration; 11],
    /// (round number, duration) of the first submitter's rounds.
    pub(crate) rounds: Vec<(u64, Duration)>,
}

impl Stages {
    /// The stages of `operation`, requested at `sent`, answered at `answered`, seen completed
    /// at `seen`; `None` when its spans are incomplete (the operation did not run).
    pub(crate) fn of(
        recorder: &StageRecorder,
        operation: &str,
        sent: Instant,
        answered: Instant,
        seen: Instant,
    ) -> Option<Stages> {
        let spans = recorder.take(operation);
        let stages = Self::of_spans(&spans, sent, answered, seen);
        if stages.is_none() {
            // Not all closed yet: kept for a later look.
            recorder.put_back(operation, spans);
        }
        stages
    }

    fn of_spans(spans: &[SpanRecord], sent: Instant, answered: Instant, seen: Instant) -> Option<Stages> {
        let first = |device: &str, name: &str| {
            spans
                .iter()
                .filter(|s| s.device == device && s.name == name)
                .min_by_key(|s| s.opened)
        };
        // The committee: the devices that ran the protocol.
        let mut committee: Vec<&str> = spans
            .iter()
            .filter(|s| s.name == "protocol")
            .map(|s| s.device.as_str())
            .collect();
        committee.sort_unstable();
        committee.dedup();
        // The first submitter: the first whose submission came back.
        let submitter = committee
            .iter()
            .filter_map(|d| first(d, "submit").map(|s| (*d, s.closed)))
            .min_by_key(|(_, at)| *at)?
            .0;
        let last = |name: &str, at_open: bool| -> Option<Instant> {
            committee
                .iter()
                .map(|d| first(d, name).map(|s| if at_open { s.opened } else { s.closed }))
                .collect::<Option<Vec<_>>>()?
                .into_iter()
                .max()
        };
        let milestones = [
            sent,
            answered,
            last("vote", true)?,
            last("approval", true)?,
            last("approval", false)?,
            last("record_vote", false)?,
            last("operation", true)?,
            last("run_mark", true)?,
            last("run_mark", false)?,
            first(submitter, "protocol")?.closed,
            first(submitter, "submit")?.closed,
            seen,
        ];
        let mut stages = [Duration::ZERO; 11];
        for (k, pair) in milestones.windows(2).enumerate() {
            stages[k] = pair[1].saturating_duration_since(pair[0]);
        }
        let mut rounds: Vec<(u64, Duration)> = spans
            .iter()
            .filter(|s| s.device == submitter && s.name == "round")
            .filter_map(|s| Some((s.round?, s.closed.saturating_duration_since(s.opened))))
            .collect();
        rounds.sort_by_key(|(r, _)| *r);
        Some(Stages { stages, rounds })
    }
}

/// p50 and p95 of one stage over the measured operations of one kind.
#[derive(Serialize)]
pub(crate) struct StageLatency {
    pub(crate) stage: String,
    pub(crate) p50_ms: f64,
    pub(crate) p95_ms: f64,
}

/// The coordinator calls the devices made while one kind of signature was measured.
#[derive(Serialize)]
pub(crate) struct CallLatency {
    pub(crate) call: String,
    /// Calls per signature (all devices; background work such as polls included).
    pub(crate) per_signature: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p95_ms: f64,
}

/// The stage table of one kind of operation.
#[derive(Serialize)]
pub(crate) struct StageReport {
    pub(crate) operation: &'static str,
    pub(crate) runs: usize,
    pub(crate) stages: Vec<StageLatency>,
    pub(crate) coordinator_calls: Vec<CallLatency>,
}

impl StageReport {
    /// The report of `runs`: every stage, then each protocol round (`round N`, the first
    /// submitter's time from its first message of the round to its first of the next).
    pub(crate) fn new(
        operation: &'static str,
        runs: &[Stages],
        calls: &HashMap<String, Vec<Duration>>,
    ) -> StageReport {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let row = |stage: String, mut samples: Vec<f64>| {
            samples.sort_by(f64::total_cmp);
            StageLatency {
                stage,
                p50_ms: super::e2e::round(super::e2e::percentile(&samples, 50.0)),
                p95_ms: super::e2e::round(super::e2e::percentile(&samples, 95.0)),
            }
        };
        let mut stages: Vec<StageLatency> = STAGES
            .iter()
            .enumerate()
            .map(|(k, name)| row((*name).to_owned(), runs.iter().map(|r| ms(r.stages[k])).collect()))
            .collect();
        let mut numbers: Vec<u64> = runs
            .iter()
            .flat_map(|r| r.rounds.iter().map(|(n, _)| *n))
            .collect();
        numbers.sort_unstable();
        numbers.dedup();
        for n in numbers {
            let samples = runs
                .iter()
                .flat_map(|r| r.rounds.iter().filter(|(m, _)| *m == n).map(|(_, d)| ms(*d)))
                .collect();
            stages.push(row(format!("  protocol round {n}"), samples));
        }
        let mut coordinator_calls: Vec<CallLatency> = calls
            .iter()
            .map(|(call, d)| {
                let latency = row(call.clone(), d.iter().map(|d| ms(*d)).collect());
                CallLatency {
                    call: call.clone(),
                    per_signature: super::e2e::round(d.len() as f64 / runs.len().max(1) as f64),
                    p50_ms: latency.p50_ms,
                    p95_ms: latency.p95_ms,
                }
            })
            .collect();
        coordinator_calls.sort_by(|a, b| b.per_signature.total_cmp(&a.per_signature));
        StageReport {
            operation,
            runs: runs.len(),
            stages,
            coordinator_calls,
        }
    }
}

/// Prints the stage reports side by side.
pub(crate) fn print_table(reports: &[StageReport]) {
    if reports.is_empty() {
        return;
    }
    print!("\n{:<22}", "stage (p50 ms)");
    for r in reports {
        print!(" {:>18}", short(r.operation));
    }
    println!();
    let mut names: Vec<&str> = Vec::new();
    for r in reports {
        for s in &r.stages {
            if !names.contains(&s.stage.as_str()) {
                names.push(&s.stage);
            }
        }
    }
    for name in names {
        print!("{name:<22}");
        for r in reports {
            match r.stages.iter().find(|s| s.stage == name) {
                Some(s) => print!(" {:>18.1}", s.p50_ms),
                None => print!(" {:>18}", "-"),
            }
        }
        println!();
    }
    for r in reports {
        println!(
            "\ncoordinator calls during {} (per signature, p50 / p95 ms):",
            short(r.operation)
        );
        for c in &r.coordinator_calls {
            println!(
                "  {:<28} {:>5.1} x {:>6.1} / {:>6.1}",
                c.call, c.per_signature, c.p50_ms, c.p95_ms
            );
        }
    }
}

fn short(operation: &str) -> &str {
    operation.strip_suffix("_e2e").unwrap_or(operation)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spans of one signature by devices `a` and `b` (both in the committee; `b` submits
    /// first), opened `at` ms after `t0` and lasting `ms`.
    fn recorder(t0: Instant) -> StageRecorder {
        let recorder = StageRecorder::default();
        let ms = |m: u64| t0 + Duration::from_millis(m);
        let mut spans = Vec::new();
        let mut span = |device: &str, name: &'static str, round: Option<u64>, at: u64, len: u64| {
            spans.push(SpanRecord {
                device: device.to_owned(),
                name,
                round,
                opened: ms(at),
                closed: ms(at + len),
            });
        };
        // a votes early, b decides the quorum.
        for (d, shift) in [("a", 0), ("b", 10)] {
            span(d, "vote", None, 5 + shift, 20);
            span(d, "approval", None, 7 + shift, 2);
            span(d, "record_vote", None, 10 + shift, 3);
        }
        for (d, shift) in [("a", 2), ("b", 0)] {
            span(d, "operation", None, 30 + shift, 50);
            span(d, "start", None, 32 + shift, 2);
            span(d, "run_mark", None, 35 + shift, 1);
            span(d, "protocol", None, 40, 20 + shift);
            span(d, "round", Some(1), 40, 5);
            span(d, "round", Some(2), 45, 10 + shift);
            span(d, "submit", None, 61 + shift, 4);
        }
        recorder.spans.lock().unwrap().insert("op".to_owned(), spans);
        recorder
    }

    #[test]
    fn stages_follow_the_slowest_member_then_the_first_submitter() {
        let t0 = Instant::now();
        let recorder = recorder(t0);
        let ms = |m: u64| t0 + Duration::from_millis(m);
        let stages = Stages::of(&recorder, "op", t0, ms(2), ms(70)).unwrap();
        let got: Vec<u64> = stages.stages.iter().map(|d| d.as_millis() as u64).collect();
        // request 0→2, listed (b's vote opens) →15, checked (b's approval opens) →17,
        // approved →19, voted (b) →23, ready seen (a's operation opens) →32, mark opens (a)
        // →37, marked (a) →38, protocol end (b, first submitter) →60, submitted (b) →65,
        // seen →70 (`start`, sent meanwhile, is no milestone).
        assert_eq!(got, vec![2, 13, 2, 2, 4, 9, 5, 1, 22, 5, 5]);
        assert_eq!(
            stages.rounds,
            vec![(1, Duration::from_millis(5)), (2, Duration::from_millis(10))]
        );
        // Taken: a second read has nothing.
        assert!(Stages::of(&recorder, "op", t0, ms(2), ms(70)).is_none());
    }

    #[test]
    fn a_start_answered_after_the_run_takes_no_stage() {
        let t0 = Instant::now();
        let recorder = recorder(t0);
        let ms = |m: u64| t0 + Duration::from_millis(m);
        for s in recorder.spans.lock().unwrap().get_mut("op").unwrap() {
            if s.name == "start" {
                // `startOperation` answered only after the submission: nobody waited for it.
                s.closed = ms(68);
            }
        }
        let stages = Stages::of(&recorder, "op", t0, ms(2), ms(70)).unwrap();
        let got: Vec<u64> = stages.stages.iter().map(|d| d.as_millis() as u64).collect();
        assert_eq!(got, vec![2, 13, 2, 2, 4, 9, 5, 1, 22, 5, 5]);
    }

    #[test]
    fn an_operation_without_a_submission_has_no_stages_until_it_comes() {
        let t0 = Instant::now();
        let recorder = recorder(t0);
        let submits: Vec<SpanRecord> = {
            let mut spans = recorder.spans.lock().unwrap();
            let op = spans.get_mut("op").unwrap();
            let submits = op.iter().filter(|s| s.name == "submit").cloned().collect();
            op.retain(|s| s.name != "submit");
            submits
        };
        assert!(Stages::of(&recorder, "op", t0, t0, t0).is_none());
        // The spans stay for a later look, when the submissions have closed.
        recorder
            .spans
            .lock()
            .unwrap()
            .get_mut("op")
            .unwrap()
            .extend(submits);
        let ms = |m: u64| t0 + Duration::from_millis(m);
        assert!(Stages::of(&recorder, "op", t0, ms(2), ms(70)).is_some());
    }
}
