//! A real Kafka-protocol broker on loopback for the Kafka tests.
//!
//! The broker is Tansu (`tansu` on crates.io, Apache-2.0), a Kafka-compatible broker that
//! `test.sh` installs with `cargo install` (SQLite storage, so data survives a broker
//! restart). `SLUICE_KAFKA_BROKER` names the binary, else `~/.cargo/bin/tansu`. Without one,
//! the Kafka tests print why and return (and fail under `CI`, where `test.sh` installs it).
#![allow(dead_code)]

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

pub struct Broker {
    child: Option<Child>,
    binary: PathBuf,
    pub dir: tempfile::TempDir,
    pub port: u16,
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
    /// Starts a broker on a free loopback port; `None` (after a loud message) when no broker
    /// binary is provisioned outside CI.
    pub async fn start() -> Option<Broker> {
        let Some(binary) = broker_binary() else {
            let message = "KAFKA TESTS SKIPPED: no broker binary; run ./test.sh (it runs \
                           cargo install tansu) or set SLUICE_KAFKA_BROKER";
            assert!(std::env::var_os("CI").is_none(), "{message}");
            eprintln!("\n*** {message} ***\n");
            return None;
        };
        let mut broker = Broker {
            child: None,
            binary,
            dir: tempfile::tempdir().expect("broker dir"),
            port: super::support::free_port(),
        };
        broker.spawn().await;
        Some(broker)
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("broker.log"))
            .expect("broker log");
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = Command::new(&self.binary)
            .arg("broker")
            .arg("--cluster-id=sluice-test")
            .arg(format!("--listener-url={url}"))
            .arg(format!("--advertised-listener-url={url}"))
            .arg("--storage-engine=sqlite://tansu.db")
            .current_dir(self.dir.path())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn the broker");
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(60)).await;
    }

    /// Waits until the broker answers a metadata request.
    async fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let bootstrap = self.bootstrap();
        loop {
            let bootstrap = bootstrap.clone();
            let ok = tokio::task::spawn_blocking(move || {
                let consumer: BaseConsumer = ClientConfig::new()
                    .set("bootstrap.servers", &bootstrap)
                    .set("log_level", "0")
                    .create()
                    .ok()?;
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

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same port and storage.
    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn().await;
    }

    pub async fn create_topic(&self, name: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .create()
            .expect("admin client");
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
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .create()
            .expect("producer");
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
