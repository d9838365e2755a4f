//! A real Kubernetes control plane on 127.0.0.1 for kerf's end-to-end tests: etcd,
//! kube-apiserver (RBAC, token and client-certificate authentication, TLS verified
//! against a CA made per cluster), kube-scheduler, kube-controller-manager and,
//! optionally, kwok to play the kubelets of fake nodes. [`TestCluster::start`] launches
//! them as child processes in a fresh temporary directory on free ports and returns once
//! the cluster can be used; dropping the [`TestCluster`] stops them and removes the
//! directory. Several clusters may run at once in one test binary.
//!
//! What it is not: a fake or a mock (every request reaches a real apiserver and etcd),
//! a way to run real containers (there is no kubelet; pods only "run" on kwok's nodes),
//! or a production setup (keys are throw-away, etcd skips fsync, everything listens on
//! loopback). It never skips: if a binary is missing or a component does not come up,
//! `start` returns an error naming it, with the tail of its log.
//!
//! The binaries are built once from the Go module proxy by `tools/control-plane/build.sh`
//! (cached under `~/.cache/kerf/control-plane/`), which `start` runs unless
//! `$KERF_CONTROL_PLANE_BIN` names a directory that already holds them. Set
//! `KERF_KEEP_CLUSTER=1` to keep a cluster's directory (logs, kubeconfigs, audit log)
//! after the test.

pub mod moto;
mod pki;
mod process;

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::sleep;
use std::time::{Duration, Instant};

use process::{Proc, Watchdog};

/// How long each readiness wait (apiserver, default ServiceAccount, kwok) may take.
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a component gets between SIGTERM and SIGKILL on teardown.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Service ClusterIP range; the apiserver's serving certificate covers its first address.
const SERVICE_CIDR: &str = "10.0.0.0/24";
/// Pod IPs kwok hands out: a /12, so tests with thousands of pods do not run out.
const POD_CIDR: &str = "10.16.0.0/12";

/// What to run besides etcd, the apiserver, the scheduler and the controller manager.
#[derive(Debug, Clone)]
pub struct Options {
    /// Run kwok, which makes managed nodes Ready (with lease heartbeats) and their pods
    /// Running. Default `true`.
    pub kwok: bool,
    /// Write an audit log: every request at `Metadata` level, one JSON event per line,
    /// stage `RequestReceived` omitted (so one `ResponseComplete` event per request, plus
    /// `ResponseStarted` for watches). See [`TestCluster::audit_log_path`]. Default `false`.
    pub audit: bool,
    /// kwok manages the nodes matching this label selector (e.g. `kwok-partition=a`, as
    /// Karpenter's kwok provider sets) instead of those annotated
    /// `kwok.x-k8s.io/node=fake`. Default `None`.
    pub kwok_manage_label_selector: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            kwok: true,
            audit: false,
            kwok_manage_label_selector: None,
        }
    }
}

/// Why a cluster could not be started or used. `Debug` prints the same text as
/// `Display`, so a test's `.unwrap()` shows the log tail readably.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A control-plane binary is missing, or building them failed.
    #[error("{0}")]
    Binaries(String),
    /// A component exited or did not become ready in time.
    #[error("{component} did not start: {reason}\n--- last lines of {} ---\n{tail}", log.display())]
    Component {
        /// `etcd`, `kube-apiserver`, `kube-scheduler`, `kube-controller-manager` or `kwok`.
        component: &'static str,
        /// What was waited for, or how it exited.
        reason: String,
        /// The component's log file.
        log: PathBuf,
        /// The last lines of that log.
        tail: String,
    },
    /// Writing the cluster's files or spawning a process failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Generating a key or certificate failed.
    #[error("generating keys and certificates: {0}")]
    Pki(#[from] rcgen::Error),
    /// An HTTP request to the apiserver failed or was refused.
    #[error("{0}")]
    Http(String),
}

impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// A running control plane. Stops its processes and removes its directory on drop
/// (also when the test panics); a watchdog stops them if the test process dies first.
pub struct TestCluster {
    /// `None` once `Drop` has taken it.
    dir: Option<tempfile::TempDir>,
    /// `KERF_KEEP_CLUSTER=1`: leave the directory behind.
    keep: bool,
    root: PathBuf,
    /// In start order: etcd, kube-apiserver, kube-scheduler, kube-controller-manager, kwok.
    procs: Vec<Proc>,
    watchdog: Watchdog,
    api: Api,
    ca: pki::Ca,
    kubeconfig: PathBuf,
    log_dir: PathBuf,
    audit_log: Option<PathBuf>,
    next_user_file: AtomicUsize,
}

impl TestCluster {
    /// Ensures the binaries (runs `tools/control-plane/build.sh`, found from this crate's
    /// workspace root, unless `$KERF_CONTROL_PLANE_BIN` names their directory), then starts
    /// etcd, kube-apiserver (RBAC, token auth), kube-scheduler, kube-controller-manager and
    /// (per [`Options::kwok`]) kwok, and waits until `/readyz` is ok, the `default`
    /// ServiceAccount exists in namespace `default`, and kwok answers `/healthz`.
    ///
    /// Blocks for several seconds. Fails — never skips — with an error naming the missing
    /// binary or the component that did not start, with the tail of its log.
    pub fn start(opts: Options) -> Result<TestCluster, Error> {
        let t0 = Instant::now();
        let bin = bin_dir()?;
        let mut wanted = vec![
            "etcd",
            "kube-apiserver",
            "kube-scheduler",
            "kube-controller-manager",
        ];
        if opts.kwok {
            wanted.push("kwok");
        }
        check_binaries(&bin, &wanted)?;
        let stages = if opts.kwok {
            kwok_stages(&bin)?
        } else {
            String::new()
        };

        let dir = tempfile::Builder::new()
            .prefix("kerf-testcluster-")
            .tempdir()
            .map_err(io_err("creating the cluster directory"))?;
        let root = dir.path().to_path_buf();
        let log_dir = root.join("logs");
        // etcd creates its data directory itself, with the mode it wants (0700).
        for sub in ["logs", "pki", "users"] {
            fs::create_dir(root.join(sub)).map_err(io_err(format!("creating {sub}/")))?;
        }
        let write = |name: &str, text: &str| -> Result<PathBuf, Error> {
            let path = root.join(name);
            fs::write(&path, text).map_err(io_err(format!("writing {}", path.display())))?;
            Ok(path)
        };

        let [etcd_port, peer_port, api_port, kwok_port] =
            free_ports().map_err(io_err("picking free ports"))?;
        let server = format!("https://127.0.0.1:{api_port}");

        let ca = pki::Ca::new()?;
        let serving = ca.serving()?;
        let (sa_key, sa_pub) = pki::service_account_key()?;
        let ca_file = write("pki/ca.crt", &ca.cert_pem)?;
        let serving_cert = write("pki/apiserver.crt", &serving.cert_pem)?;
        let serving_key = write("pki/apiserver.key", &serving.key_pem)?;
        let sa_key = write("pki/sa.key", &sa_key)?;
        let sa_pub = write("pki/sa.pub", &sa_pub)?;

        // Static tokens: the test's admin and each component, all in system:masters but
        // under their own names so the audit log tells them apart.
        let mut tokens = String::new();
        let mut kubeconfigs = Vec::new();
        for user in ["admin", "kube-scheduler", "kube-controller-manager", "kwok"] {
            let token = random_hex::<24>().map_err(io_err("reading /dev/urandom"))?;
            tokens.push_str(&format!("{token},{user},{user},\"system:masters\"\n"));
            let text = kubeconfig(&server, &ca_file, user, &Credentials::Token(&token));
            kubeconfigs.push((write(&format!("{user}.kubeconfig"), &text)?, token));
        }
        let tokens = write("tokens.csv", &tokens)?;
        let admin_token = kubeconfigs[0].1.clone();

        let path = |p: &Path| p.display().to_string();
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let etcd_args = vec![
            "--name=kerf-testcluster".to_string(),
            format!("--data-dir={}", path(&root.join("etcd"))),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=kerf-testcluster={peer_url}"),
            "--unsafe-no-fsync=true".to_string(),
            format!("--quota-backend-bytes={}", 512 << 20),
            "--log-level=warn".to_string(),
        ];
        let mut api_args = vec![
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".to_string(),
            // Loopback cannot be an Endpoints address, so the `kubernetes` Service gets
            // no endpoints rather than the host's first interface address.
            "--advertise-address=127.0.0.1".to_string(),
            "--endpoint-reconciler-type=none".to_string(),
            format!("--secure-port={api_port}"),
            format!("--tls-cert-file={}", path(&serving_cert)),
            format!("--tls-private-key-file={}", path(&serving_key)),
            format!("--client-ca-file={}", path(&ca_file)),
            format!("--token-auth-file={}", path(&tokens)),
            "--authorization-mode=Node,RBAC".to_string(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_string(),
            format!("--service-account-key-file={}", path(&sa_pub)),
            format!("--service-account-signing-key-file={}", path(&sa_key)),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            "--allow-privileged=true".to_string(),
            "--profiling=false".to_string(),
        ];
        let audit_log = if opts.audit {
            let policy = write("audit-policy.yaml", AUDIT_POLICY)?;
            let log = root.join("audit.log");
            api_args.extend([
                format!("--audit-policy-file={}", path(&policy)),
                format!("--audit-log-path={}", path(&log)),
                "--audit-log-format=json".to_string(),
                "--audit-log-mode=blocking".to_string(),
            ]);
            Some(log)
        } else {
            None
        };
        let scheduler_config = write(
            "kube-scheduler.yaml",
            &format!(
                "apiVersion: kubescheduler.config.k8s.io/v1\n\
                 kind: KubeSchedulerConfiguration\n\
                 clientConnection:\n  kubeconfig: {}\n  qps: 100\n  burst: 100\n\
                 leaderElection:\n  leaderElect: false\n",
                yaml_str(&path(&kubeconfigs[1].0))
            ),
        )?;
        let scheduler_args = vec![
            format!("--config={}", path(&scheduler_config)),
            "--secure-port=0".to_string(),
        ];
        let kcm_args = vec![
            format!("--kubeconfig={}", path(&kubeconfigs[2].0)),
            "--leader-elect=false".to_string(),
            "--secure-port=0".to_string(),
            "--controllers=*".to_string(),
            // client-go's default of 20 requests a second (burst 30) per controller is a
            // laptop's: at a thousand nodes the node lifecycle controller lifts
            // `not-ready` taints, and the ReplicaSet controller creates pods, 20 a second
            // (it logged waits of 9.7 s for "client-side throttling"), and that, not the
            // autoscaler, paced how fast pods could bind. Managed control planes scale
            // theirs; these are the values Kubernetes' own scalability validation runs
            // it with (sig-scalability's release-1.9 report, 5,000 nodes:
            // `CONTROLLER_MANAGER_TEST_ARGS=--kube-api-qps=100 --kube-api-burst=100`,
            // `SCHEDULER_TEST_ARGS=--kube-api-qps=100`; the scheduler's below).
            "--kube-api-qps=100".to_string(),
            "--kube-api-burst=100".to_string(),
            "--use-service-account-credentials=false".to_string(),
            format!("--service-account-private-key-file={}", path(&sa_key)),
            format!("--root-ca-file={}", path(&ca_file)),
        ];

        let keep = std::env::var_os("KERF_KEEP_CLUSTER").is_some_and(|v| v == "1");
        let watchdog = Watchdog::spawn((!keep).then_some(root.as_path()))
            .map_err(io_err("starting the watchdog (sh)"))?;
        let api = Api::new(&server, &ca.cert_pem, admin_token)?;
        // From here on, an early return drops `cluster`, which stops what was started.
        let mut cluster = TestCluster {
            dir: Some(dir),
            keep,
            root: root.clone(),
            procs: Vec::new(),
            watchdog,
            api,
            ca,
            kubeconfig: kubeconfigs[0].0.clone(),
            log_dir,
            audit_log,
            next_user_file: AtomicUsize::new(0),
        };

        cluster.spawn("etcd", &bin, etcd_args)?;
        cluster.spawn("kube-apiserver", &bin, api_args)?;
        cluster.wait_apiserver()?;

        cluster.spawn("kube-scheduler", &bin, scheduler_args)?;
        cluster.spawn("kube-controller-manager", &bin, kcm_args)?;
        if opts.kwok {
            // Stage documents only: a KwokConfiguration document, even `options: {}`,
            // replaces kwok's defaulted options with zeros ("node leases parallelism must
            // be greater than 0"); the flags below set what differs from the defaults.
            let config = write("kwok.yaml", &stages)?;
            let selector = match &opts.kwok_manage_label_selector {
                Some(labels) => format!("--manage-nodes-with-label-selector={labels}"),
                None => {
                    "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake".to_string()
                }
            };
            let kwok_args = vec![
                format!("--kubeconfig={}", path(&kubeconfigs[3].0)),
                format!("--config={}", path(&config)),
                "--manage-all-nodes=false".to_string(),
                selector,
                format!("--cidr={POD_CIDR}"),
                "--node-ip=127.0.0.1".to_string(),
                "--node-lease-duration-seconds=40".to_string(),
                format!("--server-address=127.0.0.1:{kwok_port}"),
            ];
            cluster.spawn("kwok", &bin, kwok_args)?;
        }

        cluster.wait(
            "kube-controller-manager",
            "the default ServiceAccount in `default`",
            |api| api.expect_ok("/api/v1/namespaces/default/serviceaccounts/default"),
        )?;
        if opts.kwok {
            let healthz = format!("http://127.0.0.1:{kwok_port}/healthz");
            cluster.wait("kwok", "kwok's /healthz", |api| api.get_plain(&healthz))?;
        }
        cluster.check_running()?;
        eprintln!(
            "kerf-testcluster: control plane up at {server} in {:.1} s ({})",
            t0.elapsed().as_secs_f64(),
            cluster.root.display()
        );
        Ok(cluster)
    }

    /// The admin kubeconfig: a static token for user `admin` in group `system:masters`,
    /// the cluster's CA to verify the apiserver (no insecure flag needed).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// A new kubeconfig for `user`, optionally in `group`, authenticated by a client
    /// certificate the cluster's CA signs on the spot. Not in `system:masters` unless
    /// asked: RBAC decides what it may do (for least-privilege tests). One group at most
    /// because the certificate generator writes one Organization, the group's carrier.
    pub fn kubeconfig_for(&self, user: &str, group: Option<&str>) -> Result<PathBuf, Error> {
        let groups: Vec<&str> = group.into_iter().collect();
        let pair = self.ca.client(user, &groups)?;
        let n = self.next_user_file.fetch_add(1, Ordering::Relaxed);
        let safe: String = user
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let base = self.root.join("users").join(format!("{n}-{safe}"));
        let write = |ext: &str, text: &str| -> Result<PathBuf, Error> {
            let path = base.with_extension(ext);
            fs::write(&path, text).map_err(io_err(format!("writing {}", path.display())))?;
            Ok(path)
        };
        let cert = write("crt", &pair.cert_pem)?;
        let key = write("key", &pair.key_pem)?;
        let text = kubeconfig(
            &self.server_url(),
            &self.root.join("pki/ca.crt"),
            user,
            &Credentials::Cert {
                cert: &cert,
                key: &key,
            },
        );
        write("kubeconfig", &text)
    }

    /// `https://127.0.0.1:<port>`.
    pub fn server_url(&self) -> String {
        self.api.base.clone()
    }

    /// Kills the apiserver with SIGKILL and starts it again on the same port and etcd,
    /// then waits for `/readyz`. Clients (and the other components) see the connection
    /// drop and must reconnect.
    pub fn restart_apiserver(&mut self) -> Result<(), Error> {
        let i = self.index("kube-apiserver");
        let old = self.procs[i].pid();
        self.procs[i].kill();
        self.watchdog.unwatch(old);
        self.procs[i]
            .respawn()
            .map_err(io_err("restarting kube-apiserver"))?;
        let new = self.procs[i].pid();
        self.watchdog.watch(new);
        self.wait_apiserver()
    }

    /// Each component's stdout and stderr, in `<component>.log`.
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// The audit log (JSON lines, one event per request at `Metadata` level) when
    /// [`Options::audit`] is set.
    pub fn audit_log_path(&self) -> Option<&Path> {
        self.audit_log.as_deref()
    }

    /// `GET /metrics` as admin: the apiserver's Prometheus text (e.g.
    /// `apiserver_request_total`).
    pub fn apiserver_metrics(&self) -> Result<String, Error> {
        match self.api.get("/metrics") {
            Ok((200, body)) => Ok(body),
            Ok((status, body)) => Err(Error::Http(format!("GET /metrics: {status}: {body}"))),
            Err(e) => Err(Error::Http(format!("GET /metrics: {e}"))),
        }
    }

    fn index(&self, name: &str) -> usize {
        self.procs
            .iter()
            .position(|p| p.name == name)
            .expect("component was started")
    }

    fn spawn(&mut self, name: &'static str, bin: &Path, args: Vec<String>) -> Result<(), Error> {
        let log = self.log_dir.join(format!("{name}.log"));
        let p = Proc::spawn(name, bin.join(name), args, log)
            .map_err(io_err(format!("starting {}", bin.join(name).display())))?;
        self.watchdog.watch(p.pid());
        self.procs.push(p);
        Ok(())
    }

    fn wait_apiserver(&mut self) -> Result<(), Error> {
        self.wait("kube-apiserver", "/readyz", |api| api.expect_ok("/readyz"))
    }

    /// Polls `ready` until it succeeds; fails if any component exits meanwhile (naming
    /// it) or after [`READY_TIMEOUT`] (naming `blame`).
    fn wait(
        &mut self,
        blame: &'static str,
        what: &str,
        ready: impl Fn(&Api) -> Result<(), String>,
    ) -> Result<(), Error> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            self.check_running()?;
            let last = match ready(&self.api) {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if Instant::now() > deadline {
                let p = &self.procs[self.index(blame)];
                return Err(Error::Component {
                    component: blame,
                    reason: format!(
                        "{what} not ready within {} s; last answer: {last}{}",
                        READY_TIMEOUT.as_secs(),
                        KEEP_HINT
                    ),
                    log: p.log.clone(),
                    tail: p.log_tail(),
                });
            }
            sleep(Duration::from_millis(100));
        }
    }

    fn check_running(&mut self) -> Result<(), Error> {
        for p in &mut self.procs {
            if let Some(how) = p.exited() {
                return Err(Error::Component {
                    component: p.name,
                    reason: format!("{how}{KEEP_HINT}"),
                    log: p.log.clone(),
                    tail: p.log_tail(),
                });
            }
        }
        Ok(())
    }
}

const KEEP_HINT: &str = " (set KERF_KEEP_CLUSTER=1 to keep the cluster directory and its logs)";

impl Drop for TestCluster {
    fn drop(&mut self) {
        for p in self.procs.iter_mut().rev() {
            p.stop(STOP_GRACE);
        }
        self.watchdog.disarm();
        if let Some(dir) = self.dir.take()
            && self.keep
        {
            eprintln!("kerf-testcluster: kept {}", dir.keep().display());
        }
    }
}

/// Blocking HTTPS to the apiserver as admin, verifying it against the cluster's CA.
struct Api {
    agent: ureq::Agent,
    base: String,
    token: String,
}

impl Api {
    fn new(base: &str, ca_pem: &str, token: String) -> Result<Api, Error> {
        let ca = ureq::tls::Certificate::from_pem(ca_pem.as_bytes())
            .map_err(|e| Error::Http(format!("loading the cluster CA: {e}")))?;
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::Specific(Arc::new(vec![ca])))
            .build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .proxy(None)
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .new_agent();
        Ok(Api {
            agent,
            base: base.to_string(),
            token,
        })
    }

    /// `GET path` as admin: status and body.
    fn get(&self, path: &str) -> Result<(u16, String), String> {
        let mut resp = self
            .agent
            .get(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .call()
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(256 << 20)
            .read_to_string()
            .map_err(|e| e.to_string())?;
        Ok((status, body))
    }

    fn expect_ok(&self, path: &str) -> Result<(), String> {
        match self.get(path)? {
            (200, _) => Ok(()),
            (status, body) => Err(format!("{status}: {}", body.trim())),
        }
    }

    /// `GET url` without credentials (kwok's plain-HTTP health endpoint).
    fn get_plain(&self, url: &str) -> Result<(), String> {
        let resp = self.agent.get(url).call().map_err(|e| e.to_string())?;
        match resp.status().as_u16() {
            200 => Ok(()),
            status => Err(format!("status {status}")),
        }
    }
}

const AUDIT_POLICY: &str = "\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
";

enum Credentials<'a> {
    Token(&'a str),
    Cert { cert: &'a Path, key: &'a Path },
}

fn kubeconfig(server: &str, ca: &Path, user: &str, creds: &Credentials<'_>) -> String {
    let creds = match creds {
        Credentials::Token(token) => format!("    token: {}\n", yaml_str(token)),
        Credentials::Cert { cert, key } => format!(
            "    client-certificate: {}\n    client-key: {}\n",
            yaml_str(&cert.display().to_string()),
            yaml_str(&key.display().to_string())
        ),
    };
    format!(
        "apiVersion: v1\nkind: Config\n\
         clusters:\n- name: kerf-testcluster\n  cluster:\n    server: {server}\n    \
         certificate-authority: {ca}\n\
         users:\n- name: {user}\n  user:\n{creds}\
         contexts:\n- name: kerf-testcluster\n  context:\n    cluster: kerf-testcluster\n    \
         user: {user}\n\
         current-context: kerf-testcluster\n",
        ca = yaml_str(&ca.display().to_string()),
        user = yaml_str(user),
    )
}

/// A double-quoted YAML (and JSON) string.
fn yaml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn random_bytes<const N: usize>() -> io::Result<[u8; N]> {
    let mut buf = [0u8; N];
    File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf)
}

fn random_hex<const N: usize>() -> io::Result<String> {
    Ok(random_bytes::<N>()?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Four distinct free loopback ports, never handed out twice in this process.
///
/// Chosen at random below the kernel's ephemeral range (`ip_local_port_range`), where
/// outgoing connections never take a port between our check and the child's `bind`;
/// a bind to `127.0.0.1:0` (which draws from the ephemeral range) only when that range
/// leaves too little room below it.
fn free_ports<const N: usize>() -> io::Result<[u16; N]> {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let ephemeral_low = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    const LOW: u16 = 10_000;
    let mut ports = [0u16; N];
    let mut found = 0;
    let mut held = Vec::new();
    for _ in 0..10_000 {
        if found == N {
            break;
        }
        let listener = if ephemeral_low > LOW + 1000 {
            let r = u16::from_le_bytes(random_bytes::<2>()?);
            let port = LOW + r % (ephemeral_low - LOW);
            match TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)) {
                Ok(l) => l,
                Err(_) => continue,
            }
        } else {
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        };
        let port = listener.local_addr()?.port();
        if handed_out.insert(port) {
            ports[found] = port;
            found += 1;
            held.push(listener);
        }
    }
    if found < N {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "no free loopback ports",
        ));
    }
    Ok(ports)
}

/// The directory holding the binaries: `$KERF_CONTROL_PLANE_BIN`, or the last line
/// `tools/control-plane/build.sh` prints (it builds them the first time). Once per process.
fn bin_dir() -> Result<PathBuf, Error> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(dir) = std::env::var_os("KERF_CONTROL_PLANE_BIN") {
            return Ok(PathBuf::from(dir));
        }
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/control-plane/build.sh");
        let out = Command::new("bash")
            .arg(&script)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("running {}: {e}", script.display()))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(format!(
                "{} failed ({}); its output is above. Set KERF_CONTROL_PLANE_BIN to a directory \
                 holding etcd, kube-apiserver, kube-scheduler, kube-controller-manager and kwok \
                 to skip the build.",
                script.display(),
                out.status
            ));
        }
        match stdout.lines().rev().find(|l| !l.trim().is_empty()) {
            Some(line) => Ok(PathBuf::from(line.trim())),
            None => Err(format!("{} printed no bin directory", script.display())),
        }
    })
    .clone()
    .map_err(Error::Binaries)
}

fn check_binaries(dir: &Path, names: &[&str]) -> Result<(), Error> {
    for name in names {
        if !dir.join(name).is_file() {
            return Err(Error::Binaries(format!(
                "{name} not found in {} (tools/control-plane/build.sh builds it; \
                 $KERF_CONTROL_PLANE_BIN overrides the directory)",
                dir.display()
            )));
        }
    }
    Ok(())
}

/// The kwok Stage documents in `<bin>/../kwok-stages/*.yaml`, each prefixed by `---`.
fn kwok_stages(bin: &Path) -> Result<String, Error> {
    let dir = bin.parent().unwrap_or(bin).join("kwok-stages");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .map_err(|e| Error::Binaries(format!("kwok stages: reading {}: {e}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::Binaries(format!(
            "no kwok stages (*.yaml) in {}: kwok v0.8 has no built-in stages",
            dir.display()
        )));
    }
    let mut out = String::new();
    for f in files {
        let text = fs::read_to_string(&f).map_err(io_err(format!("reading {}", f.display())))?;
        out.push_str("---\n");
        out.push_str(&text);
        if !text.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_binary_is_named() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("etcd"), "").unwrap();
        let err = check_binaries(dir.path(), &["etcd", "kube-apiserver"]).unwrap_err();
        assert!(
            err.to_string().starts_with("kube-apiserver not found in"),
            "{err}"
        );
    }

    #[test]
    fn ports_are_distinct_across_calls() {
        let a: [u16; 4] = free_ports().unwrap();
        let b: [u16; 4] = free_ports().unwrap();
        let all: BTreeSet<u16> = a.iter().chain(&b).copied().collect();
        assert_eq!(all.len(), 8);
    }

    #[test]
    fn a_cluster_can_move_between_and_be_shared_by_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<TestCluster>();
    }

    #[test]
    fn yaml_strings_are_quoted() {
        assert_eq!(yaml_str(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
