//! The web console's sessions through the real HTTP server, on SQLite and PostgreSQL:
//! users made by an operator client, sign-in with a limit on failures, the session cookie,
//! the CSRF token every GraphQL request must carry, and what each role may send.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::{json, Value};

per_backend!(
    console_sessions_csrf_and_roles,
    console_passwords_change_and_reset
);

const CREATE_USER: &str =
    "mutation($n: String!, $r: String!) { createConsoleUser(name: $n, role: $r) { user { id name role } password } }";

/// A browser's view of the console: its cookie and CSRF token.
struct Browser {
    coord_base: String,
    http: reqwest::Client,
    cookie: Option<String>,
    csrf: Option<String>,
}

impl Browser {
    fn new(c: &Coord) -> Self {
        Browser {
            coord_base: c.base.clone(),
            http: c.http.clone(),
            cookie: None,
            csrf: None,
        }
    }

    async fn sign_in(&mut self, org: &str, name: &str, password: &str) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}/console/session", self.coord_base))
            .json(&json!({"organisationId": org, "name": name, "password": password}))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        if let Some(set) = resp.headers().get("set-cookie") {
            let set = set.to_str().unwrap().to_owned();
            for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
                assert!(set.contains(attribute), "{set}");
            }
            assert!(!set.contains("Secure"), "plain HTTP: no Secure attribute: {set}");
            self.cookie = Some(set.split(';').next().unwrap().to_owned());
        }
        let body: Value = resp.json().await.unwrap();
        self.csrf = body["csrfToken"].as_str().map(str::to_owned);
        (status, body)
    }

    /// A POST to `path` with the cookie and `csrf` as the CSRF header.
    fn post(&self, path: &str, csrf: Option<&str>, body: Value) -> reqwest::RequestBuilder {
        let mut req = self.http.post(format!("{}{path}", self.coord_base)).json(&body);
        if let Some(cookie) = &self.cookie {
            req = req.header("cookie", cookie);
        }
        if let Some(csrf) = csrf {
            req = req.header("x-csrf-token", csrf);
        }
        req
    }

    /// A GraphQL request with the cookie and `csrf` as the CSRF header.
    async fn gql_with(&self, csrf: Option<&str>, query: &str, vars: Value) -> Value {
        self.post("/graphql", csrf, json!({"query": query, "variables": vars}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn gql(&self, query: &str, vars: Value) -> Value {
        self.gql_with(self.csrf.as_deref(), query, vars).await
    }

    /// `POST /console/password` with the cookie and CSRF token: the status.
    async fn change_password(&self, current: &str, new: &str) -> u16 {
        self.post(
            "/console/password",
            self.csrf.as_deref(),
            json!({"current": current, "new": new}),
        )
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
    }
}

/// People change their own password (the current one must verify; their other sessions
/// end, this one stays); an operator or a console admin gives a new one to a person who
/// forgot theirs (their sessions end); nobody else can.
async fn console_passwords_change_and_reset(db: Db) {
    let init = init_org(&db, "acme").await;
    let org = init.org_id.to_string();
    let c = Coord::start(&db).await;
    let (operator, _) = c.org(&init).await;
    let made = operator
        .ok(CREATE_USER, json!({"n": "ann", "r": "approver"}))
        .await;
    let ann_id = made["createConsoleUser"]["user"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let first = made["createConsoleUser"]["password"].as_str().unwrap().to_owned();
    let admin = operator.ok(CREATE_USER, json!({"n": "ada", "r": "admin"})).await;
    let admin_password = admin["createConsoleUser"]["password"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut laptop = Browser::new(&c);
    let mut phone = Browser::new(&c);
    assert_eq!(laptop.sign_in(&org, "ann", &first).await.0, 200);
    assert_eq!(phone.sign_in(&org, "ann", &first).await.0, 200);

    // Refused: without the CSRF token, a wrong current password, a short or unchanged one.
    let csrf = laptop.csrf.take();
    assert_eq!(
        laptop.change_password(&first, "a brand new passphrase").await,
        403
    );
    laptop.csrf = csrf;
    assert_eq!(
        laptop.change_password("wrong", "a brand new passphrase").await,
        401
    );
    assert_eq!(laptop.change_password(&first, "short").await, 400);
    assert_eq!(laptop.change_password(&first, &first).await, 400);
    // Changed: this session stays, the phone's ends; only the new password signs in.
    let second = "a brand new passphrase";
    assert_eq!(laptop.change_password(&first, second).await, 204);
    assert!(laptop.gql("query { vaults { id } }", json!({})).await["data"].is_object());
    assert_eq!(
        code(&phone.gql("query { vaults { id } }", json!({})).await),
        "UNAUTHENTICATED"
    );
    assert_eq!(Browser::new(&c).sign_in(&org, "ann", &first).await.0, 401);
    assert_eq!(Browser::new(&c).sign_in(&org, "ann", second).await.0, 200);

    // Ann may not reset anyone's password; an admin and an operator client may.
    let reset = "mutation($id: ID!) { resetConsolePassword(id: $id) { user { name } password } }";
    assert_eq!(code(&laptop.gql(reset, json!({"id": ann_id})).await), "FORBIDDEN");
    let mut ada = Browser::new(&c);
    assert_eq!(ada.sign_in(&org, "ada", &admin_password).await.0, 200);
    let given = ada.gql(reset, json!({"id": ann_id})).await;
    let third = given["data"]["resetConsolePassword"]["password"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(given["data"]["resetConsolePassword"]["user"]["name"], "ann");
    // Her sessions ended; the new password signs in, the old does not.
    assert_eq!(
        code(&laptop.gql("query { vaults { id } }", json!({})).await),
        "UNAUTHENTICATED"
    );
    assert_eq!(Browser::new(&c).sign_in(&org, "ann", second).await.0, 401);
    assert_eq!(Browser::new(&c).sign_in(&org, "ann", &third).await.0, 200);
    let again = operator.ok(reset, json!({"id": ann_id})).await;
    assert!(again["resetConsolePassword"]["password"].is_string());
    assert_eq!(
        operator.err(reset, json!({"id": "usr_nobody"})).await,
        "NOT_FOUND"
    );
}

fn code(v: &Value) -> &str {
    v["errors"][0]["extensions"]["code"].as_str().unwrap_or("none")
}

async fn console_sessions_csrf_and_roles(db: Db) {
    let init = init_org(&db, "acme").await;
    let org = init.org_id.to_string();
    let c = Coord::start(&db).await;
    let (operator, signer) = c.org(&init).await;
    let mut users = std::collections::HashMap::new();
    for (name, role) in [
        ("vic", "viewer"),
        ("ann", "approver"),
        ("oli", "operator"),
        ("ada", "admin"),
    ] {
        let made = operator.ok(CREATE_USER, json!({"n": name, "r": role})).await;
        assert_eq!(made["createConsoleUser"]["user"]["role"], role);
        let password = made["createConsoleUser"]["password"].as_str().unwrap().to_owned();
        users.insert(name, password);
    }
    // Only operators make and list users; names are unique; roles are known.
    assert_eq!(
        signer.err(CREATE_USER, json!({"n": "x", "r": "viewer"})).await,
        "FORBIDDEN"
    );
    assert_eq!(
        signer.err("query { consoleUsers { name } }", json!({})).await,
        "FORBIDDEN"
    );
    assert_eq!(
        operator
            .err(CREATE_USER, json!({"n": "vic", "r": "viewer"}))
            .await,
        "DUPLICATE_KEY"
    );
    assert_eq!(
        operator.err(CREATE_USER, json!({"n": "y", "r": "root"})).await,
        "INVALID_INPUT"
    );

    // The page is served with a policy that runs only its own scripts.
    let page = c.http.get(format!("{}/console/", c.base)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );

    // Sign-in: a wrong password or name says the same; five failures lock the name out,
    // even for the right password.
    let mut vic = Browser::new(&c);
    let (status, body) = vic.sign_in(&org, "nobody", "x").await;
    assert_eq!((status, body["error"].as_str()), (401, Some("UNAUTHENTICATED")));
    for _ in 0..5 {
        assert_eq!(vic.sign_in(&org, "vic", "wrong").await.0, 401);
    }
    assert_eq!(vic.sign_in(&org, "vic", &users["vic"]).await.0, 429);
    // Another name is not locked.
    let mut oli = Browser::new(&c);
    let (status, body) = oli.sign_in(&org, "oli", &users["oli"]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["role"], "operator");

    // Every request needs the session's CSRF token.
    let read = "query { vaults { id } me { clientId role } }";
    let ok = oli.gql(read, json!({})).await;
    assert!(ok.get("errors").is_none(), "{ok}");
    assert_eq!(ok["data"]["me"]["clientId"], body["user"]["id"]);
    assert_eq!(code(&oli.gql_with(None, read, json!({})).await), "FORBIDDEN");
    assert_eq!(
        code(&oli.gql_with(Some("forged"), read, json!({})).await),
        "FORBIDDEN"
    );
    // The page can have the token again (a reload), from the cookie alone.
    let again: Value = c
        .http
        .get(format!("{}/console/session", c.base))
        .header("cookie", oli.cookie.clone().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["csrfToken"].as_str(), oli.csrf.as_deref());

    // Roles: operators request operations but make no users; approvers only answer.
    let devices = [
        register_device(&signer, "a").await,
        register_device(&signer, "b").await,
    ];
    let create_vault = "mutation($i: CreateVaultInput!) { createVault(input: $i) { id } }";
    let vault = json!({"i": {"name": "v", "curve": "ed25519", "threshold": 2,
        "signers": [{"deviceId": devices[0]}, {"deviceId": devices[1]}]}});
    // The live view hears of the new operation.
    let mut events = c
        .http
        .get(format!("{}/console/events", c.base))
        .header("cookie", oli.cookie.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    let made = oli.gql(create_vault, vault.clone()).await;
    assert!(made.get("errors").is_none(), "{made}");
    let id = made["data"]["createVault"]["id"].as_str().unwrap().to_owned();
    let heard = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let mut text = String::new();
        while !text.contains(&id) {
            let chunk = events.chunk().await.unwrap().expect("the stream ended");
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        text
    })
    .await
    .expect("no event for the new operation");
    assert!(
        heard.contains("event: operation") && heard.contains("AwaitingApproval"),
        "{heard}"
    );
    assert_eq!(
        code(&oli.gql(CREATE_USER, json!({"n": "z", "r": "admin"})).await),
        "FORBIDDEN"
    );
    // Operators get no API client (an allow-list: only the operation requests).
    let client = "mutation { createApiClient(role: \"operator\") { clientSecret } }";
    assert_eq!(code(&oli.gql(client, json!({})).await), "FORBIDDEN");
    // A second session cookie (one planted by a sibling site) makes the request anonymous.
    let mut planted = Browser::new(&c);
    planted.cookie = Some(format!(
        "{}; vsigner-session=planted",
        oli.cookie.clone().unwrap()
    ));
    planted.csrf = oli.csrf.clone();
    assert_eq!(code(&planted.gql(read, json!({})).await), "UNAUTHENTICATED");
    let mut ann = Browser::new(&c);
    assert_eq!(ann.sign_in(&org, "ann", &users["ann"]).await.0, 200);
    assert_eq!(code(&ann.gql(create_vault, vault.clone()).await), "FORBIDDEN");
    let aliased = "mutation($i: CreateVaultInput!) { x: createVault(input: $i) { id } }";
    assert_eq!(code(&ann.gql(aliased, vault.clone()).await), "FORBIDDEN");
    let answer = "mutation { answerAsPerson(operationId: \"op_x\", deviceId: \"d\", verdict: \"approve\", assertion: \"{}\") { seq } }";
    assert_ne!(
        code(&ann.gql(answer, json!({})).await),
        "FORBIDDEN",
        "approvers answer"
    );
    let mut ada = Browser::new(&c);
    assert_eq!(ada.sign_in(&org, "ada", &users["ada"]).await.0, 200);
    let made = ada.gql(CREATE_USER, json!({"n": "zoe", "r": "viewer"})).await;
    assert!(made.get("errors").is_none(), "{made}");
    // Viewers read only.
    let mut zoe = Browser::new(&c);
    let password = made["data"]["createConsoleUser"]["password"].as_str().unwrap();
    assert_eq!(zoe.sign_in(&org, "zoe", password).await.0, 200);
    assert!(zoe.gql(read, json!({})).await.get("errors").is_none());
    assert_eq!(code(&zoe.gql(create_vault, vault).await), "FORBIDDEN");
    // The users are listed, without passwords.
    let listed = zoe.gql("query { consoleUsers { name role } }", json!({})).await;
    assert_eq!(
        listed["data"]["consoleUsers"].as_array().unwrap().len(),
        5,
        "{listed}"
    );

    // Passkey registration: the CSRF token, the page's Origin, and a registration under way
    // are each required, and viewers register none (the browser test registers a real one).
    let viewer = c
        .http
        .post(format!("{}/console/passkeys/options", c.base))
        .header("cookie", zoe.cookie.clone().unwrap())
        .header("x-csrf-token", zoe.csrf.clone().unwrap())
        .header("origin", "http://localhost")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(viewer.status(), 403);
    let options = |csrf: Option<&str>, origin: Option<&str>| {
        let mut req = c
            .http
            .post(format!("{}/console/passkeys/options", c.base))
            .header("cookie", oli.cookie.clone().unwrap())
            .json(&json!({}));
        if let Some(csrf) = csrf {
            req = req.header("x-csrf-token", csrf);
        }
        if let Some(origin) = origin {
            req = req.header("origin", origin);
        }
        req.send()
    };
    assert_eq!(
        options(None, Some("http://localhost")).await.unwrap().status(),
        403
    );
    assert_eq!(options(oli.csrf.as_deref(), None).await.unwrap().status(), 400);
    let started = options(oli.csrf.as_deref(), Some("http://localhost"))
        .await
        .unwrap();
    assert_eq!(started.status(), 200);
    let started: Value = started.json().await.unwrap();
    assert_eq!(started["publicKey"]["rp"]["id"], "localhost", "{started}");
    assert_eq!(
        started["publicKey"]["authenticatorSelection"]["userVerification"],
        "required"
    );
    let forged = json!({"id": "QUJD", "rawId": "QUJD", "type": "public-key",
        "response": {"attestationObject": "QUJD", "clientDataJSON": "QUJD"}});
    let finish = c
        .http
        .post(format!("{}/console/passkeys", c.base))
        .header("cookie", oli.cookie.clone().unwrap())
        .header("x-csrf-token", oli.csrf.clone().unwrap())
        .header("origin", "http://localhost")
        .json(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(finish.status(), 400, "a forged registration is refused");
    let none = zoe
        .gql("query { consolePasskeys { credentialId } }", json!({}))
        .await;
    assert_eq!(none["data"]["consolePasskeys"], json!([]), "{none}");
    assert_eq!(
        signer
            .err("query { consolePasskeys { credentialId } }", json!({}))
            .await,
        "FORBIDDEN"
    );

    // Live views: at most 4 per session.
    let stream = || {
        c.http
            .get(format!("{}/console/events", c.base))
            .header("cookie", zoe.cookie.clone().unwrap())
            .send()
    };
    let mut open = Vec::new();
    for _ in 0..4 {
        let s = stream().await.unwrap();
        assert_eq!(s.status(), 200);
        open.push(s);
    }
    assert_eq!(stream().await.unwrap().status(), 429);
    drop(open);

    // An admin revokes a user: its session ends at once and it cannot sign in again.
    let zoe_id = made["data"]["createConsoleUser"]["user"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let revoked = ada
        .gql(
            "mutation($id: ID!) { revokeConsoleUser(id: $id) { revokedAt } }",
            json!({"id": zoe_id}),
        )
        .await;
    assert!(
        revoked["data"]["revokeConsoleUser"]["revokedAt"].is_string(),
        "{revoked}"
    );
    assert_eq!(code(&zoe.gql(read, json!({})).await), "UNAUTHENTICATED");
    assert_eq!(zoe.sign_in(&org, "zoe", password).await.0, 401);

    // Signing out needs the token too, and ends the session.
    let out = |csrf: Option<String>| {
        let mut req = c
            .http
            .delete(format!("{}/console/session", c.base))
            .header("cookie", oli.cookie.clone().unwrap());
        if let Some(csrf) = csrf {
            req = req.header("x-csrf-token", csrf);
        }
        req.send()
    };
    assert_eq!(out(None).await.unwrap().status(), 403);
    assert_eq!(out(oli.csrf.clone()).await.unwrap().status(), 204);
    assert_eq!(code(&oli.gql(read, json!({})).await), "UNAUTHENTICATED");
}

/// The console served apart (`vsigner console`): the page from its own copies, with a
/// policy admitting only its scripts and its import map; only the page's API paths reach
/// the coordinator, whose answers come back sandboxed, with the session cookie made
/// `Secure` when the console is served over HTTPS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_served_apart_forwards_only_the_pages_calls() {
    use vsigner_coordinator::console::apart::{routes, Upstream};
    let db = Db::sqlite();
    let init = init_org(&db, "acme").await;
    let org = init.org_id.to_string();
    let c = Coord::start(&db).await;
    let (operator, _) = c.org(&init).await;
    let made = operator
        .ok(CREATE_USER, json!({"n": "ann", "r": "approver"}))
        .await;
    let password = made["createConsoleUser"]["password"].as_str().unwrap().to_owned();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let host = base.trim_start_matches("http://").to_owned();
    let upstream = Upstream::new(url::Url::parse(&c.base).unwrap(), None, true, vec![host]).unwrap();
    tokio::spawn(async move { axum::serve(listener, routes(upstream)).await });
    let http = reqwest::Client::new();

    // The page and its modules are the console's own.
    let page = http.get(format!("{base}/console/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'self' 'sha256-"), "{csp}");
    assert!(page
        .text()
        .await
        .unwrap()
        .contains(r#"<script type="importmap">"#));
    for module in [
        "/console/verify.js",
        "/console/passkeys.js",
        "/console/vendor/noble-curves/secp256k1.js",
    ] {
        let got = http.get(format!("{base}{module}")).send().await.unwrap();
        assert_eq!(got.status(), 200, "{module}");
        assert!(got.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript"));
    }
    assert_eq!(
        http.get(format!("{base}/console/vendor/noble-curves/nope.js"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    // Another host name (a DNS-rebinding page) does not reach the coordinator.
    let rebound = http
        .post(format!("{base}/graphql"))
        .header("host", "attacker.example")
        .json(&json!({"query": "{ __typename }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), 421);
    // Nothing but the page's calls is forwarded.
    for path in ["/health", "/metrics", "/oauth/token", "/graphql/ws", "/"] {
        let got = http.get(format!("{base}{path}")).send().await.unwrap();
        assert!(
            got.status() == 404 || got.status() == 405,
            "{path}: {}",
            got.status()
        );
    }

    // Sign-in through it: the coordinator's session, the cookie made Secure here.
    let signed = http
        .post(format!("{base}/console/session"))
        .header("origin", &base)
        .json(&json!({"organisationId": org, "name": "ann", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 200);
    assert_eq!(
        signed.headers()["content-security-policy"],
        "sandbox; default-src 'none'"
    );
    let cookie = signed.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.starts_with("__Host-vsigner-session=")
            && cookie.contains("HttpOnly")
            && cookie.ends_with("; Secure"),
        "{cookie}"
    );
    let body: Value = signed.json().await.unwrap();
    let csrf = body["csrfToken"].as_str().unwrap().to_owned();
    let cookie = cookie.split(';').next().unwrap().to_owned();

    // GraphQL through it, with the cookie and the CSRF token; without the token, refused
    // by the coordinator as on its own console.
    let ask = |csrf: Option<&str>| {
        let mut req = http
            .post(format!("{base}/graphql"))
            .header("cookie", format!("tracker=1; {cookie}"))
            .json(&json!({"query": "query { vaults { id } }"}));
        if let Some(csrf) = csrf {
            req = req.header("x-csrf-token", csrf);
        }
        req.send()
    };
    let answer = ask(Some(&csrf)).await.unwrap();
    assert_eq!(
        answer.headers()["content-security-policy"],
        "sandbox; default-src 'none'"
    );
    assert_eq!(answer.headers()["x-content-type-options"], "nosniff");
    let data: Value = answer.json().await.unwrap();
    assert_eq!(data["data"]["vaults"], json!([]), "{data}");
    let refused: Value = ask(None).await.unwrap().json().await.unwrap();
    assert!(refused["errors"].is_array(), "{refused}");
}
