//! `--audit-log`: one HMAC-chained JSON line per request, matching the certificates issued one
//! to one; `warden audit verify` accepts the log and names the first edited or deleted line,
//! including the last ones (checkpoint); a full disk refuses issuance without breaking the
//! chain; rotated files verify as a sequence.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use warden_core::profile::Validity;
use warden_tests::common::{OPENSSL_KEYS, openssl_csr, tempdir, try_run};
use warden_tests::server::{
    Options, Tmpfs, Warden, check_response, metric, request, sign, warden_binary,
};
use warden_tests::{common, server, support};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `warden audit verify --key KEY FILES...` (extra args before the files).
fn verify_with(key: &Path, extra: &[&str], files: &[&Path]) -> (bool, String) {
    let mut cmd = Command::new(warden_binary());
    cmd.args(["audit", "verify", "--key"]).arg(key).args(extra);
    cmd.args(files);
    let out = try_run(cmd);
    (out.success, format!("{}{}", out.stdout, out.stderr))
}

fn verify(key: &Path, log: &Path) -> (bool, String) {
    verify_with(key, &[], &[log])
}

fn checkpoint(log: &Path) -> PathBuf {
    PathBuf::from(format!("{}.checkpoint", log.display()))
}

fn write_lines(path: &Path, lines: &[&str]) {
    fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// A server with `--audit-log LOG` (and `extra`), its credentials in `creds`.
fn start_audited(creds: &Path, log: &Path, extra: &[&str]) -> Warden {
    let mut args = vec!["--audit-log", log.to_str().unwrap()];
    args.extend_from_slice(extra);
    Warden::start_with(creds, &Options::new().args(args))
}

/// Scratch space for an audited server: its credentials (holding `audit.key`), a work
/// directory, the log, and a CSR made in the work directory.
struct Audited {
    creds: tempfile::TempDir,
    work: tempfile::TempDir,
    log: PathBuf,
    key: PathBuf,
    csr: Vec<u8>,
}

impl Audited {
    /// The log in `log_dir`, or in the work directory when `None`.
    fn new(log_dir: Option<&Path>) -> Self {
        let creds = tempdir();
        let work = tempdir();
        let log = log_dir.unwrap_or(work.path()).join("audit.log");
        let key = creds.path().join("audit.key");
        let csr = openssl_csr(work.path(), &OPENSSL_KEYS[0]).pem;
        Self {
            creds,
            work,
            log,
            key,
            csr,
        }
    }
}

async fn issue(warden: &Warden, csr: &[u8], app: &str) -> Result<(), tonic::Status> {
    let mut client = warden.client().await;
    sign(&mut client, request(app, "ns1", "", csr))
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_lines_match_issued_certificates_and_tampering_is_found() {
    let creds = tempdir();
    let work = tempdir();
    let log = work.path().join("audit.log");
    let warden = Warden::start_with(
        creds.path(),
        &Options::new().args(["--audit-log", log.to_str().unwrap()]),
    );
    let csr = openssl_csr(work.path(), &OPENSSL_KEYS[0]).pem;
    let mut client = warden.client().await;
    let mut issued = Vec::new();
    for app in ["app-a", "app-b", "app-c"] {
        let response = sign(&mut client, request(app, "ns1", "", &csr))
            .await
            .unwrap();
        issued.push(check_response(
            &response,
            &warden.trust_anchors_path(),
            &format!("spiffe://public/ns/ns1/{app}"),
        ));
    }
    let refused = sign(&mut client, request("bad.id", "ns1", "", &csr))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    drop(warden);

    let text = fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains("token"),
        "the token field must never be logged"
    );
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{text}");
    for (line, cert) in lines.iter().zip(&issued) {
        let tbs = cert.leaf.tbs_certificate();
        assert_eq!(line["outcome"], "issued");
        assert_eq!(line["namespace"], "ns1");
        assert_eq!(line["validator"], "insecure");
        assert_eq!(line["serial"], hex(tbs.serial_number().as_bytes()));
        assert_eq!(
            line["spiffe_id"],
            support::core_svid_id(&cert.leaf).unwrap().to_string()
        );
        assert_eq!(
            line["not_after"],
            Validity::of(&cert.leaf).not_after.to_string()
        );
        assert_eq!(line["issuer_skid"], hex(&cert.akid()));
        assert!(
            line["peer"].as_str().unwrap().starts_with("127.0.0.1:"),
            "{line}"
        );
        assert_eq!(line["prev_hmac"].as_str().unwrap().len(), 64);
        assert!(line.get("prev_sha256").is_none(), "{line}");
    }
    assert_eq!(lines[3]["outcome"], "refused");
    assert_eq!(lines[3]["code"], "PermissionDenied");
    assert_eq!(
        lines[3]["message"],
        "invalid request: parameter app-id cannot contain dots"
    );

    let key = creds.path().join("audit.key");
    assert_eq!(server::mode(&key), 0o600);
    let (ok, output) = verify(&key, &log);
    assert!(
        ok && output.contains("4 records, chain intact; ends where its checkpoint says"),
        "{output}"
    );

    let raw: Vec<&str> = text.lines().collect();
    let edited = raw[1].replace("app-b", "app-x");
    let tampered = [raw[0], edited.as_str(), raw[2], raw[3]].join("\n") + "\n";
    fs::write(&log, tampered).unwrap();
    let (ok, output) = verify(&key, &log);
    assert!(!ok && output.contains("line 3: chain broken"), "{output}");

    let deleted = [raw[0], raw[2], raw[3]].join("\n") + "\n";
    fs::write(&log, deleted).unwrap();
    let (ok, output) = verify(&key, &log);
    assert!(!ok && output.contains("line 2: chain broken"), "{output}");
}

/// Tampering at the end of the log, which the links alone cannot show: each case is found by
/// `warden audit verify`, with a message naming the file and the line.
#[tokio::test(flavor = "multi_thread")]
async fn deleted_or_edited_last_lines_and_a_replayed_checkpoint_are_found() {
    let Audited {
        creds,
        work,
        log,
        key,
        csr,
    } = Audited::new(None);
    let warden = start_audited(creds.path(), &log, &[]);
    issue(&warden, &csr, "app-0").await.unwrap();
    issue(&warden, &csr, "app-1").await.unwrap();
    let older_checkpoint = fs::read(checkpoint(&log)).unwrap();
    for i in 2..5 {
        issue(&warden, &csr, &format!("app-{i}")).await.unwrap();
    }
    drop(warden);
    let (ok, output) = verify(&key, &log);
    assert!(ok && output.contains("5 records, chain intact"), "{output}");
    let text = fs::read_to_string(&log).unwrap();
    let raw: Vec<&str> = text.lines().collect();
    let name = log.display().to_string();

    let cases: Vec<(&str, String, &str)> = vec![
        (
            "last line deleted",
            raw[..4].join("\n") + "\n",
            "the checkpoint records 5 lines but",
        ),
        (
            "last two lines deleted",
            raw[..3].join("\n") + "\n",
            "its last 2 line(s) were deleted",
        ),
        (
            "last line edited",
            [&raw[..4], &[raw[4].replace("app-4", "app-x").as_str()]]
                .concat()
                .join("\n")
                + "\n",
            "line 5 of",
        ),
        (
            "cut mid-line",
            text[..text.len() - 20].to_owned(),
            "line 5: not an audit record: incomplete last line",
        ),
        (
            "middle lines reordered",
            [raw[0], raw[2], raw[1], raw[3], raw[4]].join("\n") + "\n",
            "line 2: chain broken",
        ),
    ];
    for (what, contents, needle) in cases {
        fs::write(&log, contents).unwrap();
        let (ok, output) = verify(&key, &log);
        assert!(!ok, "{what}: verify passed: {output}");
        assert!(
            output.contains(needle) && output.contains(&name),
            "{what}: {output}"
        );
    }

    // The log intact, the checkpoint replaced by an older one.
    fs::write(&log, &text).unwrap();
    fs::write(checkpoint(&log), &older_checkpoint).unwrap();
    let (ok, output) = verify(&key, &log);
    assert!(
        !ok && output.contains("the checkpoint records 2 lines but") && output.contains(&name),
        "{output}"
    );
    // Both rewound together to that earlier state is indistinguishable from it (README says so).
    write_lines(&log, &raw[..2]);
    let (ok, output) = verify(&key, &log);
    assert!(ok, "{output}");

    // Without the key nothing is accepted; with another key neither.
    let (ok, output) = verify_with(&work.path().join("nokey"), &[], &[&log]);
    assert!(!ok && output.contains("nokey"), "{output}");
    let other = common::write_file(work.path(), "other.key", "ab".repeat(32));
    let (ok, output) = verify(&other, &log);
    assert!(!ok && output.contains("wrong MAC"), "{output}");
}

/// A crash mid-write leaves an incomplete last line: the next start cuts it (it was never
/// checkpointed), records that it did, and serves; the log still verifies.
#[tokio::test(flavor = "multi_thread")]
async fn an_incomplete_last_line_does_not_brick_the_restart() {
    let Audited {
        creds,
        work: _work,
        log,
        key,
        csr,
    } = Audited::new(None);
    let warden = start_audited(creds.path(), &log, &[]);
    issue(&warden, &csr, "before").await.unwrap();
    drop(warden); // SIGKILL
    let fragment = br#"{"time":"2026-12-04T10:00:00Z","outc"#;
    let mut f = fs::OpenOptions::new().append(true).open(&log).unwrap();
    std::io::Write::write_all(&mut f, fragment).unwrap();
    drop(f);

    let warden = start_audited(creds.path(), &log, &[]);
    issue(&warden, &csr, "after").await.unwrap();
    drop(warden);
    assert_eq!(outcomes(&log), ["issued", "recovered", "issued"]);
    let text = fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(&format!(
            "removed an incomplete last line ({} bytes",
            fragment.len()
        )),
        "{text}"
    );
    let (ok, output) = verify(&key, &log);
    assert!(ok && output.contains("3 records, chain intact"), "{output}");
}

/// Rotation: the log rolls over at --audit-log-max-bytes; the files verify as a sequence,
/// and a missing or misplaced file is named.
#[tokio::test(flavor = "multi_thread")]
async fn rotated_files_verify_as_a_sequence() {
    let Audited {
        creds,
        work: _work,
        log,
        key,
        csr,
    } = Audited::new(None);
    let warden = start_audited(creds.path(), &log, &["--audit-log-max-bytes", "1000"]);
    for i in 0..7 {
        issue(&warden, &csr, &format!("app-{i}")).await.unwrap();
    }
    drop(warden);
    let one = PathBuf::from(format!("{}.1", log.display()));
    let two = PathBuf::from(format!("{}.2", log.display()));
    assert!(one.exists() && two.exists(), "no rotated files");
    let header: serde_json::Value =
        serde_json::from_str(fs::read_to_string(&log).unwrap().lines().next().unwrap()).unwrap();
    assert_eq!(header["outcome"], "rotated", "{header}");
    assert!(header["seq"].as_u64().unwrap() >= 3, "{header}");

    let mut files = vec![one.clone(), two.clone()];
    let mut n = 3;
    loop {
        let next = PathBuf::from(format!("{}.{n}", log.display()));
        if !next.exists() {
            break;
        }
        files.push(next);
        n += 1;
    }
    files.push(log.clone());
    let all: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let (ok, output) = verify_with(&key, &[], &all);
    assert!(ok && output.contains("7 records, chain intact"), "{output}");

    let mut missing = all.clone();
    missing.remove(1);
    let (ok, output) = verify_with(&key, &[], &missing);
    assert!(
        !ok && output.contains("a file is missing or out of order"),
        "{output}"
    );
    let mut swapped = all.clone();
    swapped.swap(0, 1);
    let (ok, output) = verify_with(&key, &[], &swapped);
    assert!(
        !ok && output.contains(&format!(
            "{}: does not start with a rotation header",
            one.display()
        )),
        "{output}"
    );
    // The last line of a rotated file deleted: the next file's header says how many it had.
    let text = fs::read_to_string(&one).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    write_lines(&one, &lines[..lines.len() - 1]);
    let (ok, output) = verify_with(&key, &[], &all);
    assert!(
        !ok && output.contains(&two.display().to_string())
            && output.contains("lines at its end were deleted"),
        "{output}"
    );
}

// ---------------------------------------------------------------------------------------------
// Disk full (a small tmpfs; needs root, or WARDEN_SKIP_TMPFS=1 to skip knowingly).

/// Issues requests until the log's last 4 KiB page has fewer than 200 bytes left: tmpfs
/// allocates whole pages, so on a full tmpfs a line fits only into what is left of the log's
/// last page. With less than any line needs (an issued line is ~400 bytes, a `resumed` line
/// ~250), every write is cut short, which is the partial write a full disk causes.
async fn fill_last_page(warden: &Warden, log: &Path, csr: &[u8]) -> usize {
    let mut issued = 0;
    let mut app_len = 8;
    loop {
        let len = fs::metadata(log).unwrap().len() as usize;
        let room = (4096 - len % 4096) % 4096;
        if len > 0 && room < 200 {
            return issued;
        }
        if len > 0 {
            // A line is `base + 2 * app_len` bytes (the app id is in app_id and spiffe_id).
            let text = fs::read_to_string(log).unwrap();
            let base = text.lines().last().unwrap().len() + 1 - 2 * app_len;
            app_len = (room.saturating_sub(100 + base) / 2).clamp(8, 60);
        }
        issue(warden, csr, &format!("{issued:0>app_len$}"))
            .await
            .unwrap();
        issued += 1;
        assert!(
            issued < 40,
            "cannot fill the last page of {}",
            log.display()
        );
    }
}

fn outcomes(log: &Path) -> Vec<String> {
    fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["outcome"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// A full disk: requests are refused with Unavailable naming the audit log, healthz is 503 and
/// the metrics say why; no fragment is left; once space is freed, issuance resumes by itself
/// (with a `resumed` line), the log verifies and a restart serves.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_refuses_issuance_without_breaking_the_chain_and_recovers() {
    let Some(small) = Tmpfs::mount("64k") else {
        return;
    };
    let Audited {
        creds,
        work: _work,
        log,
        key,
        csr,
    } = Audited::new(Some(&small.mount_point));
    let warden = start_audited(creds.path(), &log, &[]);
    let before = fill_last_page(&warden, &log, &csr).await;
    let good = fs::read(&log).unwrap();
    assert!(good.ends_with(b"\n"));

    small.fill();
    for app in ["full-1", "full-2"] {
        let status = issue(&warden, &csr, app).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        assert!(status.message().contains("audit log"), "{status:?}");
    }
    assert!(
        fs::read(&log).unwrap() == good,
        "a failed write must leave the log as it was (no fragment); it ends in {:?}",
        String::from_utf8_lossy(&fs::read(&log).unwrap())
            .rsplit('\n')
            .next()
    );
    let (code, body) = warden.healthz();
    assert_eq!((code, body.as_str()), (503, "not ready: audit-log\n"));
    let (_, text) = warden.metrics("/metrics");
    assert_eq!(
        metric(&text, "warden_audit_log_writable"),
        Some(0.0),
        "{text}"
    );
    assert!(
        metric(&text, "warden_audit_log_write_failures_total").unwrap() >= 1.0,
        "{text}"
    );
    assert!(
        warden.output.text().contains("No space left on device"),
        "the server log must say why"
    );
    let (ok, output) = verify(&key, &log);
    assert!(ok, "the log verifies while the disk is full: {output}");

    fs::remove_file(small.mount_point.join("filler")).unwrap();
    issue(&warden, &csr, "after").await.unwrap();
    assert_eq!(warden.healthz().0, 200);
    let (_, text) = warden.metrics("/metrics");
    assert_eq!(
        metric(&text, "warden_audit_log_writable"),
        Some(1.0),
        "{text}"
    );
    drop(warden);

    let seen = outcomes(&log);
    assert_eq!(seen.len(), before + 2, "{seen:?}");
    assert_eq!(seen[before..], ["resumed", "issued"], "{seen:?}");
    let (ok, output) = verify(&key, &log);
    assert!(
        ok && output.contains(&format!("{} records, chain intact", before + 2)),
        "{output}"
    );

    let warden = start_audited(creds.path(), &log, &[]);
    issue(&warden, &csr, "restarted").await.unwrap();
    drop(warden);
    let (ok, output) = verify(&key, &log);
    assert!(
        ok && output.contains(&format!("{} records, chain intact", before + 3)),
        "{output}"
    );
}

/// The server recovers on its own once space is freed: healthz 503 keeps traffic away, so no
/// request may come to retry the write.
#[tokio::test(flavor = "multi_thread")]
async fn healthz_recovers_without_requests_once_space_is_freed() {
    let Some(small) = Tmpfs::mount("64k") else {
        return;
    };
    let Audited {
        creds,
        work: _work,
        log,
        key: _,
        csr,
    } = Audited::new(Some(&small.mount_point));
    let warden = start_audited(creds.path(), &log, &[]);
    fill_last_page(&warden, &log, &csr).await;
    small.fill();
    assert_eq!(
        issue(&warden, &csr, "full").await.unwrap_err().code(),
        tonic::Code::Unavailable
    );
    assert_eq!(warden.healthz().0, 503);
    fs::remove_file(small.mount_point.join("filler")).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while warden.healthz().0 != 200 {
        assert!(std::time::Instant::now() < deadline, "healthz stayed 503");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(outcomes(&log).last().unwrap(), "resumed");
}
