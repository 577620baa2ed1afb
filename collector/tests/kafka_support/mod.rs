//! A real Kafka-protocol broker on loopback for the Kafka tests.
//!
//! The broker is Tansu (`tansu` on crates.io, Apache-2.0), a Kafka-compatible broker that
//! `test.sh` installs with `cargo install` (SQLite storage, so data survives a broker
//! restart). `SLUICE_KAFKA_BROKER` names the binary, else `~/.cargo/bin/tansu`. Without one,
//! the Kafka tests print why and return (and fail under `CI`, where `test.sh` installs it).
//!
//! Security, as far as Tansu 0.6 has it: `--authentication` requires a SASL login
//! (SCRAM-SHA-256, SCRAM-SHA-512; its SASL server offers no PLAIN) before any request but the
//! handshake, checked against the credentials stored with `tansu user create`. Its
//! `--cert`/`--key` options are parsed but the listener never uses them (0.6.0 serves plain
//! TCP), so TLS comes from a TLS-terminating proxy on loopback in front of the broker, which
//! the broker advertises as its address.

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sluice_testkit::tls::{Pki, tls_proxy};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A SASL login, as a client presents it and as the broker knows it.
#[derive(Clone)]
pub struct Login {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: &'static str,
    pub username: String,
    pub password: String,
}

impl Login {
    pub fn new(mechanism: &'static str, username: &str, password: &str) -> Login {
        Login {
            mechanism,
            username: username.into(),
            password: password.into(),
        }
    }
}

/// TLS and SASL settings of one Kafka client: written into a Sluice config, or applied to the
/// tests' own rdkafka clients.
#[derive(Clone, Default)]
pub struct ClientSecurity {
    /// `ca.pem`, and with `client_cert` also `client.pem` / `client.key`, from this dir.
    pub tls: Option<PathBuf>,
    pub client_cert: bool,
    pub sasl: Option<Login>,
}

impl ClientSecurity {
    /// The `tls = {...}` and `sasl = {...}` keys of a Sluice Kafka component.
    pub fn toml(&self) -> String {
        let mut text = String::new();
        if let Some(dir) = &self.tls {
            let mut tls = format!("ca_file = {:?}", dir.join("ca.pem"));
            if self.client_cert {
                tls.push_str(&format!(
                    ", cert_file = {:?}, key_file = {:?}",
                    dir.join("client.pem"),
                    dir.join("client.key")
                ));
            }
            text.push_str(&format!("tls = {{ {tls} }}\n"));
        }
        if let Some(login) = &self.sasl {
            text.push_str(&format!(
                "sasl = {{ mechanism = {:?}, username = {:?}, password = {:?} }}\n",
                login.mechanism, login.username, login.password
            ));
        }
        text
    }

    fn apply(&self, config: &mut ClientConfig) {
        let protocol = match (self.tls.is_some(), self.sasl.is_some()) {
            (false, false) => "plaintext",
            (true, false) => "ssl",
            (false, true) => "sasl_plaintext",
            (true, true) => "sasl_ssl",
        };
        config.set("security.protocol", protocol);
        if let Some(dir) = &self.tls {
            config.set("ssl.ca.location", dir.join("ca.pem").to_string_lossy());
            if self.client_cert {
                config
                    .set(
                        "ssl.certificate.location",
                        dir.join("client.pem").to_string_lossy(),
                    )
                    .set("ssl.key.location", dir.join("client.key").to_string_lossy());
            }
        }
        if let Some(login) = &self.sasl {
            config
                .set("sasl.mechanism", login.mechanism)
                .set("sasl.username", &login.username)
                .set("sasl.password", &login.password);
        }
    }
}

/// How a test broker is secured. The default is plain TCP without authentication.
#[derive(Default)]
pub struct BrokerSecurity {
    /// A TLS proxy in front of the broker with the server certificate of this PKI, requiring a
    /// client certificate when `client_cert` is set.
    pub tls: Option<(Pki, bool)>,
    /// Require SASL.
    pub authentication: bool,
    /// SCRAM users to create (`mechanism` SCRAM-SHA-256 or SCRAM-SHA-512).
    pub users: Vec<Login>,
}

/// The login the tests' own clients (topic creation, raw produce) use on an authenticating
/// broker.
fn admin_login() -> Login {
    Login::new("SCRAM-SHA-512", "test-admin", "test-admin-secret")
}

pub struct Broker {
    /// Behind a lock so a waiting test can restart a broker it only borrows.
    child: std::sync::Mutex<Option<Child>>,
    /// Where the current process's part of `broker.log` starts.
    log_start: std::sync::atomic::AtomicU64,
    binary: PathBuf,
    pub dir: tempfile::TempDir,
    /// The broker's own (plain TCP) listener.
    pub port: u16,
    /// Where clients connect: the listener, or the TLS proxy in front of it.
    advertised: SocketAddr,
    authentication: bool,
    /// What the tests' own clients present.
    admin: ClientSecurity,
    /// Kept for the client certificate and CA files.
    _pki: Option<Pki>,
}

/// The broker binary, if provisioned.
pub fn broker_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SLUICE_KAFKA_BROKER") {
        return Some(PathBuf::from(path));
    }
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")))?;
    let installed = cargo_home.join("bin/tansu");
    installed.exists().then_some(installed)
}

impl Broker {
    /// Starts a broker on a free loopback port, secured as `security` says; `None` (after a
    /// loud message) when no broker binary is provisioned outside CI. Users are created while the broker still
    /// runs without authentication (Tansu refuses every request before a login, its user
    /// admin request included), then it restarts on the same storage requiring SASL.
    pub async fn start_secured(security: BrokerSecurity) -> Option<Broker> {
        let Some(binary) = broker_binary() else {
            let message = "KAFKA TESTS SKIPPED: no broker binary; run ./test.sh (it runs \
                           cargo install tansu) or set SLUICE_KAFKA_BROKER";
            assert!(std::env::var_os("CI").is_none(), "{message}");
            eprintln!("\n*** {message} ***\n");
            return None;
        };
        let port = super::support::free_port();
        let listener: SocketAddr = ([127, 0, 0, 1], port).into();
        let (advertised, pki, admin_tls) = match security.tls {
            Some((pki, client_cert)) => {
                let proxy = tls_proxy(listener, pki.server_config(client_cert, &[])).await;
                let dir = pki.path("");
                (proxy, Some(pki), Some((dir, client_cert)))
            }
            None => (listener, None, None),
        };
        let mut broker = Broker {
            child: std::sync::Mutex::new(None),
            log_start: std::sync::atomic::AtomicU64::new(0),
            binary,
            dir: tempfile::tempdir().expect("broker dir"),
            port,
            advertised,
            authentication: false,
            admin: ClientSecurity::default(),
            _pki: pki,
        };
        if let Some((dir, client_cert)) = admin_tls {
            broker.admin.tls = Some(dir);
            broker.admin.client_cert = client_cert;
        }
        broker.spawn().await;
        if security.authentication {
            let users = std::iter::once(admin_login()).chain(security.users);
            for login in users {
                broker.create_user(&login);
            }
            broker.authentication = true;
            broker.admin.sasl = Some(admin_login());
            broker.restart().await;
        }
        Some(broker)
    }

    /// Where clients connect (the TLS proxy when there is one).
    pub fn bootstrap(&self) -> String {
        self.advertised.to_string()
    }

    /// Stores a SCRAM credential through the broker's user admin request.
    fn create_user(&self, login: &Login) {
        let mechanism = match login.mechanism {
            "SCRAM-SHA-256" => "scram256",
            "SCRAM-SHA-512" => "scram512",
            other => panic!("Tansu stores SCRAM users only, not {other}"),
        };
        let output = Command::new(&self.binary)
            .arg("user")
            .arg("create")
            .arg(format!("--broker=tcp://127.0.0.1:{}", self.port))
            .arg(format!("--mechanism={mechanism}"))
            .arg(&login.username)
            .arg(&login.password)
            .output()
            .expect("run tansu user create");
        assert!(
            output.status.success(),
            "tansu user create {}: {}{}",
            login.username,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// A client config for the tests' own clients: bootstrap and the admin's security.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", self.bootstrap());
        self.admin.apply(&mut config);
        config
    }

    async fn spawn(&self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("broker.log"))
            .expect("broker log");
        let start = log.metadata().map(|m| m.len()).unwrap_or(0);
        self.log_start
            .store(start, std::sync::atomic::Ordering::Relaxed);
        let mut command = Command::new(&self.binary);
        command
            .arg("broker")
            .arg("--cluster-id=sluice-test")
            .arg(format!("--listener-url=tcp://127.0.0.1:{}", self.port))
            .arg(format!(
                "--advertised-listener-url=tcp://{}",
                self.advertised
            ))
            .arg("--storage-engine=sqlite://tansu.db");
        if self.authentication {
            command.arg("--authentication");
        }
        let child = command
            .current_dir(self.dir.path())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn the broker");
        *self.child.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
        self.wait_ready(Duration::from_secs(60)).await;
    }

    /// Waits until the broker answers a metadata request.
    async fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let config = self.client_config();
            let ok = tokio::task::spawn_blocking(move || {
                let consumer: BaseConsumer = config.clone().set("log_level", "0").create().ok()?;
                consumer.fetch_metadata(None, Duration::from_secs(2)).ok()
            })
            .await
            .ok()
            .flatten()
            .is_some();
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "broker not ready in {timeout:?}; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default()
    }

    /// True when the running broker's storage service has stopped: tansu 0.6.0 ends its storage
    /// request loop on the first response it cannot hand back (`ChannelRequestService::serve`
    /// in tansu-storage's `service.rs` returns on that error), typically a request whose client
    /// gave up while the broker was coming back from a kill -9, and from then on answers every
    /// produce with an unknown error until restarted. That is the test broker wedged, not
    /// something a Kafka client can work around.
    pub fn storage_stopped(&self) -> bool {
        use std::io::{Read, Seek, SeekFrom};
        let start = self.log_start.load(std::sync::atomic::Ordering::Relaxed);
        let mut current = Vec::new();
        let read = std::fs::File::open(self.dir.path().join("broker.log")).and_then(|mut log| {
            log.seek(SeekFrom::Start(start))?;
            log.read_to_end(&mut current)
        });
        read.is_ok() && String::from_utf8_lossy(&current).contains("UnableToSend")
    }

    pub fn kill9(&self) {
        let child = self.child.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut child) = child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same port and storage.
    pub async fn restart(&self) {
        self.kill9();
        self.spawn().await;
    }

    pub async fn create_topic(&self, name: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> =
            self.client_config().create().expect("admin client");
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        let results = admin
            .create_topics(
                &[topic],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            )
            .await
            .expect("create topics");
        for result in results {
            if let Err((topic, code)) = result {
                assert_eq!(
                    code,
                    rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists,
                    "create {topic}"
                );
            }
        }
    }

    /// Produces raw records (for poison tests), acknowledged by the broker.
    pub async fn produce(&self, topic: &str, key: Option<&[u8]>, payload: &[u8]) {
        let producer: FutureProducer = self.client_config().create().expect("producer");
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).payload(payload);
        if let Some(key) = key {
            record = record.key(key);
        }
        producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .expect("produce");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill9();
    }
}
