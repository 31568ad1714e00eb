//! A deterministic in-process network for running protocols without a transport.
//!
//! Built on `round_based`'s state machines like `round_based::sim`, with two additions that
//! adversarial tests need: every outgoing message passes through an interceptor (which may
//! drop, duplicate, rewrite or re-address it, or forge its sender), and a run in which no
//! party can make progress ends with [`Outcome::Stalled`] instead of looping forever.
//! Honest runs give the same results as `round_based::sim::run`.
//!
//! [`local`] runs whole protocols among honest simulated parties (tests, benchmarks, fixture
//! generation, the demo's setup); [`bare`] runs the same protocols on the libraries alone,
//! without this crate's message layer, to measure the engine's overhead.

pub mod bare;
pub mod local;

use std::collections::VecDeque;

use round_based::state_machine::{ProceedResult, StateMachine};
use round_based::{Incoming, MessageDestination, MessageType, Outgoing};

use crate::{PartyIndex, WireMessage};

/// A message in flight.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// The sender as the recipient will see it (a transport would authenticate it).
    pub from: PartyIndex,
    /// The recipient, or `None` for everyone but `from`.
    pub to: Option<PartyIndex>,
    /// Whether recipients see the message as a broadcast (an equivocating broadcaster sends
    /// broadcasts to one recipient at a time).
    pub broadcast: bool,
    /// The message.
    pub msg: WireMessage,
}

/// How a party's run ended.
#[derive(Debug)]
pub enum Outcome<O> {
    /// The protocol returned.
    Finished(O),
    /// The party was waiting for messages that no party could send any more.
    Stalled,
    /// The state-machine executor failed (a bug, not a protocol error).
    ExecutorError(String),
}

impl<O> Outcome<O> {
    /// The output, or a panic naming how the party ended. For tests.
    pub fn unwrap_finished(self) -> O {
        match self {
            Outcome::Finished(o) => o,
            Outcome::Stalled => panic!("party stalled"),
            Outcome::ExecutorError(e) => panic!("executor error: {e}"),
        }
    }
}

/// A party of the simulation: a protocol wrapped as a state machine.
pub type Party<'a, O> = Box<dyn StateMachine<Output = O, Msg = WireMessage> + 'a>;

/// Wraps an async protocol (a function of a party of [`WireMessage`]s) into a [`Party`].
pub fn party<'a, O, F, Fut>(protocol: F) -> Party<'a, O>
where
    F: FnOnce(round_based::state_machine::MpcParty<WireMessage>) -> Fut,
    Fut: std::future::Future<Output = O> + 'a,
{
    Box::new(round_based::state_machine::wrap_protocol(protocol))
}

/// Runs honest parties to completion.
pub fn run<O>(parties: Vec<Party<'_, O>>) -> Vec<Outcome<O>> {
    run_with(parties, |e| vec![e])
}

/// Runs the parties, passing every outgoing message through `intercept`, until every party
/// has finished or no party can make progress.
pub fn run_with<O>(
    mut parties: Vec<Party<'_, O>>,
    mut intercept: impl FnMut(Envelope) -> Vec<Envelope>,
) -> Vec<Outcome<O>> {
    let n = parties.len();
    let mut queues: Vec<VecDeque<Incoming<WireMessage>>> = (0..n).map(|_| VecDeque::new()).collect();
    let mut outcomes: Vec<Option<Outcome<O>>> = (0..n).map(|_| None).collect();
    let mut wants_msg = vec![false; n];
    let mut next_id = 0u64;

    loop {
        let mut progress = false;
        for i in 0..n {
            while outcomes.get(i).is_some_and(Option::is_none) {
                let Some(party) = parties.get_mut(i) else { break };
                if wants_msg.get(i).copied().unwrap_or(false) {
                    let Some(msg) = queues.get_mut(i).and_then(VecDeque::pop_front) else {
                        break;
                    };
                    if party.received_msg(msg).is_err() {
                        set(
                            &mut outcomes,
                            i,
                            Some(Outcome::ExecutorError("state machine refused a message".into())),
                        );
                        break;
                    }
                    set(&mut wants_msg, i, false);
                    progress = true;
                }
                match party.proceed() {
                    ProceedResult::SendMsg(out) => {
                        progress = true;
                        let Outgoing { recipient, msg } = out;
                        let (to, broadcast) = match recipient {
                            MessageDestination::AllParties => (None, true),
                            MessageDestination::OneParty(j) => (Some(j), false),
                        };
                        for env in intercept(Envelope {
                            from: i as PartyIndex,
                            to,
                            broadcast,
                            msg,
                        }) {
                            route(&mut queues, &mut next_id, env);
                        }
                    }
                    ProceedResult::NeedsOneMoreMessage => set(&mut wants_msg, i, true),
                    ProceedResult::Output(o) => {
                        progress = true;
                        set(&mut outcomes, i, Some(Outcome::Finished(o)));
                    }
                    ProceedResult::Yielded => progress = true,
                    ProceedResult::Error(e) => {
                        set(&mut outcomes, i, Some(Outcome::ExecutorError(e.to_string())))
                    }
                }
            }
        }
        if !progress {
            break;
        }
    }
    outcomes
        .into_iter()
        .map(|o| o.unwrap_or(Outcome::Stalled))
        .collect()
}

fn set<T>(v: &mut [T], i: usize, value: T) {
    if let Some(slot) = v.get_mut(i) {
        *slot = value;
    }
}

fn route(queues: &mut [VecDeque<Incoming<WireMessage>>], next_id: &mut u64, env: Envelope) {
    let Envelope {
        from,
        to,
        broadcast,
        msg,
    } = env;
    let kind = if broadcast {
        MessageType::Broadcast
    } else {
        MessageType::P2P
    };
    let n = queues.len();
    let mut push = |j: usize, msg_type: MessageType, msg: WireMessage| {
        if let Some(q) = queues.get_mut(j) {
            q.push_back(Incoming {
                id: *next_id,
                sender: from,
                msg_type,
                msg,
            });
            *next_id += 1;
        }
    };
    match to {
        Some(j) => push(usize::from(j), kind, msg),
        None => {
            for j in 0..n {
                if j != usize::from(from) {
                    push(j, kind, msg.clone());
                }
            }
        }
    }
}
