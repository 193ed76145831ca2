//! Probe scheduler benchmark: 100, 1,000 and 10,000 HTTP targets on a 1 s interval against local
//! endpoints served by a child process (so the endpoints' CPU is not counted as ours). Prints
//! probes per second, CPU, RSS and scheduling lag. Run: `cargo bench -p niledr-probes --bench scheduler`
//! (add `-- --seconds N` to change the measured window; default 10).

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use niledr_probes::{HttpSpec, ProbeSpec, Scheduler, Target};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const PORTS: usize = 100;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--serve") {
        serve_endpoints();
        return;
    }
    let seconds: u64 = args
        .iter()
        .position(|a| a == "--seconds")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let (mut child, ports) = spawn_endpoints();
    println!(
        "probe scheduler benchmark: HTTP GET /health, interval 1 s, timeout 500 ms, {PORTS} local endpoints in a child process, {seconds} s measured after 2 s warm-up"
    );
    println!(
        "{:>8} {:>12} {:>10} {:>12} {:>10} {:>10} {:>10} {:>10} {:>9}",
        "targets",
        "probes/s",
        "failed",
        "CPU %",
        "probes/cpu-s",
        "RSS MiB",
        "lag p50",
        "lag p99",
        "lag max"
    );
    for n in [100usize, 1_000, 10_000] {
        run(n, &ports, seconds);
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn run(n: usize, ports: &[u16], seconds: u64) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let targets: Vec<Target> = (0..n)
            .map(|i| Target {
                id: format!("t{i}"),
                spec: ProbeSpec::Http(HttpSpec {
                    url: format!("http://127.0.0.1:{}/health", ports[i % ports.len()]),
                    expect_status: 200,
                    body_contains: Some("ok".into()),
                }),
                interval: Duration::from_secs(1),
                timeout: Duration::from_millis(500),
            })
            .collect();
        let (tx, mut rx) = mpsc::channel(65_536);
        let cancel = CancellationToken::new();
        let sched = Scheduler::start(targets, tx, cancel.clone());
        let warm_until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < warm_until {
            let _ = tokio::time::timeout(Duration::from_millis(50), rx.recv()).await;
        }
        let cpu0 = cpu_seconds();
        let t0 = Instant::now();
        let end = t0 + Duration::from_secs(seconds);
        let mut lags = Vec::with_capacity(n * seconds as usize);
        let mut failed = 0u64;
        let mut errors: std::collections::BTreeMap<String, u64> = Default::default();
        while Instant::now() < end {
            match tokio::time::timeout(Duration::from_millis(50), rx.recv()).await {
                Ok(Some(r)) => {
                    lags.push(r.schedule_lag);
                    if !r.ok {
                        failed += 1;
                        let e = r.error.unwrap_or_default();
                        // Group by the message's start so ports and numbers do not split groups.
                        let key: String = e.chars().take(60).collect();
                        *errors.entry(key).or_default() += 1;
                    }
                }
                Ok(None) => break,
                Err(_) => {}
            }
        }
        let wall = t0.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu0;
        let rss = rss_mib();
        cancel.cancel();
        sched.shutdown().await;
        lags.sort();
        let pct = |p: f64| -> f64 {
            if lags.is_empty() {
                return f64::NAN;
            }
            let i = ((lags.len() as f64 - 1.0) * p).round() as usize;
            lags[i].as_secs_f64() * 1000.0
        };
        let probes = lags.len() as f64;
        println!(
            "{:>8} {:>12.0} {:>10} {:>11.1}% {:>12.0} {:>10.1} {:>8.2}ms {:>8.2}ms {:>7.2}ms",
            n,
            probes / wall,
            failed,
            100.0 * cpu / wall,
            if cpu > 0.0 { probes / cpu } else { f64::NAN },
            rss,
            pct(0.5),
            pct(0.99),
            pct(1.0),
        );
        for (e, count) in errors.iter().take(5) {
            println!("         failures: {count} x {e}");
        }
        let _ = std::io::stdout().flush();
    });
}

fn cpu_seconds() -> f64 {
    // utime + stime from /proc/self/stat (fields 14 and 15, in clock ticks of 1/100 s).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn spawn_endpoints() -> (Child, Vec<u16>) {
    let exe = std::env::current_exe().expect("current exe");
    let mut child = Command::new(exe)
        .arg("--serve")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn endpoint server");
    let mut out = child.stdout.take().expect("stdout");
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    while !text.contains('\n') {
        let n = std::io::Read::read(&mut out, &mut buf).expect("read ports");
        assert!(n > 0, "endpoint server exited");
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let ports = text
        .trim()
        .split(',')
        .filter_map(|p| p.parse().ok())
        .collect();
    (child, ports)
}

/// The child: minimal keep-alive HTTP/1.1 servers answering `200 ok`.
fn serve_endpoints() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let mut ports = Vec::new();
        for _ in 0..PORTS {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            ports.push(l.local_addr().expect("addr").port());
            tokio::spawn(async move {
                while let Ok((mut s, _)) = l.accept().await {
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 4096];
                        let mut filled = 0;
                        loop {
                            let Ok(n) = s.read(&mut buf[filled..]).await else { return };
                            if n == 0 {
                                return;
                            }
                            filled += n;
                            while let Some(end) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
                                let resp = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-type: text/plain\r\n\r\nok\n";
                                if s.write_all(resp).await.is_err() {
                                    return;
                                }
                                buf.copy_within(end + 4..filled, 0);
                                filled -= end + 4;
                            }
                            if filled == buf.len() {
                                return;
                            }
                        }
                    });
                }
            });
        }
        let list: Vec<String> = ports.iter().map(|p| p.to_string()).collect();
        println!("{}", list.join(","));
        let _ = std::io::stdout().flush();
        std::future::pending::<()>().await;
    });
}
