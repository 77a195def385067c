use super::*;
use crate::data::{IMAGE_PIXELS, gz_path};
use std::collections::HashMap;
use std::io::Write;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// A tiny valid dataset: file name -> decompressed IDX bytes.
fn tiny_dataset(seed: u8) -> HashMap<String, Vec<u8>> {
    let px = |n: usize| -> Vec<u8> {
        (0..n * IMAGE_PIXELS)
            .map(|i| (i as u8).wrapping_add(seed))
            .collect()
    };
    let contents = [
        idx::encode_images(&px(3), 3),
        idx::encode_labels(&[seed % 10, 1, 2]),
        idx::encode_images(&px(2), 2),
        idx::encode_labels(&[3, seed % 10]),
    ];
    FILES.iter().map(|f| f.to_string()).zip(contents).collect()
}

fn expectations(data: &HashMap<String, Vec<u8>>) -> impl Fn(&str) -> (u64, String) + '_ {
    |file| {
        let bytes = &data[file];
        (bytes.len() as u64, sha256_hex(bytes))
    }
}

#[test]
fn mirrors_and_urls() {
    assert_eq!(
        default_mirrors(DatasetName::Mnist),
        vec![
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "http://yann.lecun.com/exdb/mnist/"
        ]
    );
    assert_eq!(
        default_mirrors(DatasetName::FashionMnist)[0],
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
    );
    assert_eq!(
        Mirror::new("http://h/x/").url(FILES[0]),
        "http://h/x/train-images-idx3-ubyte.gz"
    );
    assert_eq!(Mirror::new("http://h/x").url("f"), "http://h/x/f.gz");
    let opts = DownloadOptions::new(DatasetName::FashionMnist);
    assert_eq!(opts.mirrors, default_mirrors(DatasetName::FashionMnist));
    assert_eq!((opts.retries, opts.timeout.as_secs()), (2, 60));
}

#[test]
fn expected_table_is_complete_and_consistent() {
    let mut seen = std::collections::HashSet::new();
    for name in [DatasetName::Mnist, DatasetName::FashionMnist] {
        for file in FILES {
            let (len, sha) = expected(name, file);
            let want_len = match file {
                "train-images-idx3-ubyte" => 16 + 60_000 * IMAGE_PIXELS as u64,
                "t10k-images-idx3-ubyte" => 16 + 10_000 * IMAGE_PIXELS as u64,
                "train-labels-idx1-ubyte" => 8 + 60_000,
                _ => 8 + 10_000,
            };
            assert_eq!(len, want_len, "{name} {file}");
            assert_eq!(sha.len(), 64);
            assert!(
                sha.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
            assert!(seen.insert(sha), "duplicate checksum for {name} {file}");
        }
    }
    assert_eq!(expected(DatasetName::Mnist, "nope"), (0, ""));
}

#[test]
fn verify_file_reports_size_and_checksum_mismatches() {
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small.gz");
    std::fs::write(&small, gzip(&idx::encode_labels(&[1, 2]))).unwrap();
    let err = verify_file(DatasetName::Mnist, FILES[3], &small).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::SizeMismatch {
                expected: 10_008,
                actual: 10,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains(&small.display().to_string()));

    // Right size, wrong bytes.
    let same_size = dir.path().join(FILES[3]);
    std::fs::write(&same_size, idx::encode_labels(&[0; 10_000])).unwrap();
    let err = verify_file(DatasetName::Mnist, FILES[3], &same_size).unwrap_err();
    assert!(matches!(err, DataError::ChecksumMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&same_size.display().to_string()), "{msg}");
    assert!(
        msg.contains(expected(DatasetName::Mnist, FILES[3]).1),
        "{msg}"
    );

    let err = verify_file(DatasetName::Mnist, "other", &same_size).unwrap_err();
    assert!(matches!(err, DataError::UnknownFile { .. }));
}

#[test]
fn sha256_hex_known_value() {
    assert_eq!(
        sha256_hex(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[cfg(not(feature = "download"))]
#[test]
fn without_the_feature_present_files_pass_and_missing_ones_say_so() {
    let data = tiny_dataset(1);
    let dir = tempfile::tempdir().unwrap();
    let opts = DownloadOptions::new(DatasetName::Mnist);
    let err = download_with_expected(DatasetName::Mnist, dir.path(), &opts, expectations(&data))
        .unwrap_err();
    assert!(matches!(err, DataError::DownloadDisabled { .. }), "{err}");
    for (file, bytes) in &data {
        std::fs::write(gz_path(dir.path(), file), gzip(bytes)).unwrap();
    }
    let served =
        download_with_expected(DatasetName::Mnist, dir.path(), &opts, expectations(&data)).unwrap();
    assert!(served.is_empty());
}

/// A bounded HTTP/1.1 server on 127.0.0.1 for the downloader tests.
#[cfg(feature = "download")]
mod server {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::Arc;
    use std::thread::JoinHandle;
    use std::time::{Duration, Instant};

    /// What the server answers for one request.
    pub enum Reply {
        Status(u16),
        Body(Vec<u8>),
        /// Announce more bytes than are sent, then hang up.
        Truncated(Vec<u8>),
        /// Accept, say nothing for this long, hang up.
        Silent(Duration),
        /// Announce the whole body, send these first bytes of it, then go quiet for this
        /// long (a transfer that stalls mid-way) and hang up.
        Stalled(Vec<u8>, usize, Duration),
    }

    pub struct Server {
        pub base: String,
        handle: JoinHandle<Vec<String>>,
    }

    impl Server {
        /// Paths requested, in order of connection.
        pub fn requests(self) -> Vec<String> {
            self.handle.join().unwrap()
        }
    }

    /// Serve exactly `max` connections (or stop after 30 s), each with
    /// one request answered by `route(path)`, on its own thread so a
    /// silent reply does not block the next connection.
    pub fn serve<F>(max: usize, route: F) -> Server
    where
        F: Fn(&str) -> Reply + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let route = Arc::new(route);
        let handle = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut workers = Vec::new();
            while workers.len() < max && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let route = Arc::clone(&route);
                        workers.push(std::thread::spawn(move || answer(stream, &*route)));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        Server { base, handle }
    }

    fn answer(mut stream: TcpStream, route: &dyn Fn(&str) -> Reply) -> String {
        stream.set_nonblocking(false).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let path = read_request_path(&mut stream);
        // The client may hang up first (timeouts); that is not an error.
        let _ = match route(&path) {
            Reply::Status(code) => stream.write_all(
                format!("HTTP/1.1 {code} Nope\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            ),
            Reply::Body(body) => write_body(&mut stream, &body, body.len()),
            Reply::Truncated(body) => write_body(&mut stream, &body, body.len() + 1000),
            Reply::Silent(d) => {
                std::thread::sleep(d);
                Ok(())
            }
            Reply::Stalled(body, claimed, d) => {
                let sent = write_body(&mut stream, &body, claimed);
                std::thread::sleep(d);
                sent
            }
        };
        path
    }

    fn write_body(stream: &mut TcpStream, body: &[u8], claimed: usize) -> std::io::Result<()> {
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {claimed}\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        stream.flush()
    }

    fn read_request_path(stream: &mut TcpStream) -> String {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let text = String::from_utf8_lossy(&head);
        text.split_whitespace().nth(1).unwrap_or("").to_string()
    }
}

#[cfg(feature = "download")]
mod http_tests {
    use super::server::{Reply, serve};
    use super::*;
    use crate::data::MnistData;
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Routes by the first path segment: `/good/`, `/404/`, `/500/`,
    /// `/trunc/`, `/wrong/` (another valid dataset), `/raw/` (no gzip),
    /// `/silent/`.
    fn router(
        good: Arc<HashMap<String, Vec<u8>>>,
    ) -> impl Fn(&str) -> Reply + Send + Sync + 'static {
        let wrong = tiny_dataset(99);
        move |path| {
            let mut parts = path.trim_start_matches('/').splitn(2, '/');
            let kind = parts.next().unwrap_or("");
            let file = parts.next().unwrap_or("").trim_end_matches(".gz");
            let Some(bytes) = good.get(file) else {
                return Reply::Status(404);
            };
            match kind {
                "good" => Reply::Body(gzip(bytes)),
                "404" => Reply::Status(404),
                "500" => Reply::Status(500),
                "trunc" => {
                    let gz = gzip(bytes);
                    Reply::Truncated(gz[..gz.len() / 2].to_vec())
                }
                "wrong" => Reply::Body(gzip(&wrong[file])),
                "raw" => Reply::Body(bytes.clone()),
                "silent" => Reply::Silent(Duration::from_millis(2500)),
                "stall" => {
                    let gz = gzip(bytes);
                    let half = gz[..gz.len() / 2].to_vec();
                    Reply::Stalled(half, gz.len(), Duration::from_millis(2500))
                }
                _ => Reply::Status(400),
            }
        }
    }

    fn options(base: &str, kinds: &[&str], retries: u32) -> DownloadOptions {
        DownloadOptions {
            mirrors: kinds.iter().map(|k| format!("{base}/{k}/")).collect(),
            retries,
            timeout: Duration::from_millis(1000),
            progress: false,
        }
    }

    fn assert_complete(dest: &Path, data: &HashMap<String, Vec<u8>>) {
        let mut want: Vec<String> = FILES.iter().map(|f| format!("{f}.gz")).collect();
        want.sort();
        assert_eq!(entries(dest), want, "exactly the four .gz files, no .part");
        for file in FILES {
            let on_disk = std::fs::read(gz_path(dest, file)).unwrap();
            assert!(on_disk.starts_with(&[0x1f, 0x8b]), "{file} stored as gzip");
            let raw = idx::read_decompressed(&gz_path(dest, file)).unwrap();
            assert_eq!(raw, data[file], "{file}");
        }
        let loaded = MnistData::load_from(DatasetName::Mnist, dest).unwrap();
        assert_eq!((loaded.train.len(), loaded.test.len()), (3, 2));
    }

    #[test]
    fn falls_back_to_the_second_mirror_after_each_kind_of_failure() {
        let data = Arc::new(tiny_dataset(1));
        // (bad mirror, requests it gets per file with retries = 1)
        for (bad, tries) in [("404", 1), ("500", 2), ("trunc", 2), ("wrong", 2)] {
            let per_file = tries + 1;
            let server = serve(4 * per_file, router(Arc::clone(&data)));
            let dest = tempfile::tempdir().unwrap();
            let dest = dest.path().join("nested/mnist");
            let opts = options(&server.base, &[bad, "good"], 1);
            let served =
                download_with_expected(DatasetName::Mnist, &dest, &opts, expectations(&data))
                    .unwrap_or_else(|e| panic!("{bad}: {e}"));
            let good = format!("{}/good/", server.base);
            let want: Vec<(String, String)> = FILES
                .iter()
                .map(|f| (f.to_string(), good.clone()))
                .collect();
            assert_eq!(served, want, "{bad}");
            assert_complete(&dest, &data);
            let requests = server.requests();
            let mut expected_requests = Vec::new();
            for file in FILES {
                for _ in 0..tries {
                    expected_requests.push(format!("/{bad}/{file}.gz"));
                }
                expected_requests.push(format!("/good/{file}.gz"));
            }
            assert_eq!(requests, expected_requests, "{bad}");
        }
    }

    #[test]
    fn every_mirror_bad_leaves_nothing_and_names_each_failure() {
        let data = Arc::new(tiny_dataset(1));
        let kinds = ["404", "500", "trunc", "wrong", "silent"];
        let server = serve(kinds.len(), router(Arc::clone(&data)));
        let dest = tempfile::tempdir().unwrap();
        let opts = options(&server.base, &kinds, 0);
        let err =
            download_with_expected(DatasetName::Mnist, dest.path(), &opts, expectations(&data))
                .unwrap_err();
        assert!(
            matches!(err, DataError::DownloadFailed { ref failures, .. } if failures.len() == kinds.len()),
            "{err}"
        );
        let msg = err.to_string();
        for kind in kinds {
            let url = format!("{}/{kind}/{}.gz", server.base, FILES[0]);
            assert!(msg.contains(&url), "{kind} missing from: {msg}");
        }
        for reason in [
            "HTTP 404",
            "HTTP 500",
            "truncated",
            "wrong content: SHA-256",
            "timed out",
        ] {
            assert!(msg.contains(reason), "{reason} missing from: {msg}");
        }
        assert!(msg.contains(&dest.path().display().to_string()));
        assert!(!msg.contains('\n'));
        assert!(
            entries(dest.path()).is_empty(),
            "{:?}",
            entries(dest.path())
        );
        assert_eq!(server.requests().len(), kinds.len());
    }

    /// A mirror of `kind` that never answers in time: each of its 4 attempts is cut after the
    /// 1 s timeout (waiting each one out would take 10 s) and the next mirror serves.
    fn slow_mirror_is_cut_and_the_next_serves(
        kind: &str,
        seed: u8,
    ) -> Arc<HashMap<String, Vec<u8>>> {
        let data = Arc::new(tiny_dataset(seed));
        let server = serve(8, router(Arc::clone(&data)));
        let dest = tempfile::tempdir().unwrap();
        let opts = options(&server.base, &[kind, "good"], 0);
        let start = Instant::now();
        let served =
            download_with_expected(DatasetName::Mnist, dest.path(), &opts, expectations(&data))
                .unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(9),
            "{kind}: {:?}",
            start.elapsed()
        );
        assert!(served.iter().all(|(_, m)| m.ends_with("/good/")));
        assert_complete(dest.path(), &data);
        assert_eq!(server.requests().len(), 8);
        data
    }

    #[test]
    fn silent_mirror_times_out_and_the_next_one_serves() {
        slow_mirror_is_cut_and_the_next_serves("silent", 2);
    }

    /// A transfer that stops mid-body is cut by the per-read timeout (not waited out),
    /// its partial file removed, and the next mirror serves.
    #[test]
    fn transfer_stalled_mid_body_times_out_and_the_next_mirror_serves() {
        let data = slow_mirror_is_cut_and_the_next_serves("stall", 6);

        // Only stalling mirrors: the error says so for each attempt, nothing is left.
        let server = serve(2, router(Arc::clone(&data)));
        let dest = tempfile::tempdir().unwrap();
        let opts = options(&server.base, &["stall"], 1);
        let err =
            download_with_expected(DatasetName::Mnist, dest.path(), &opts, expectations(&data))
                .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("(attempt 1/2)") && msg.contains("(attempt 2/2)"),
            "{msg}"
        );
        assert!(msg.contains("after"), "names the bytes received: {msg}");
        assert!(
            entries(dest.path()).is_empty(),
            "{:?}",
            entries(dest.path())
        );
        assert_eq!(server.requests().len(), 2);
    }

    #[test]
    fn uncompressed_body_is_stored_as_gzip() {
        let data = Arc::new(tiny_dataset(3));
        let server = serve(4, router(Arc::clone(&data)));
        let dest = tempfile::tempdir().unwrap();
        let opts = options(&server.base, &["raw"], 0);
        download_with_expected(DatasetName::Mnist, dest.path(), &opts, expectations(&data))
            .unwrap();
        assert_complete(dest.path(), &data);
        server.requests();
    }

    #[test]
    fn verified_files_are_skipped_and_bad_or_partial_ones_replaced() {
        let data = Arc::new(tiny_dataset(4));
        let dest = tempfile::tempdir().unwrap();
        let d = dest.path();
        // Good: .gz, raw, .gz. Bad: a corrupt .gz plus a stale .part.
        std::fs::write(gz_path(d, FILES[0]), gzip(&data[FILES[0]])).unwrap();
        std::fs::write(d.join(FILES[1]), &data[FILES[1]]).unwrap();
        std::fs::write(gz_path(d, FILES[2]), gzip(&data[FILES[2]])).unwrap();
        std::fs::write(gz_path(d, FILES[3]), b"\x1f\x8bjunk").unwrap();
        std::fs::write(d.join(format!("{}.gz.part", FILES[3])), b"old").unwrap();
        let server = serve(1, router(Arc::clone(&data)));
        let opts = options(&server.base, &["good"], 0);
        let served =
            download_with_expected(DatasetName::Mnist, d, &opts, expectations(&data)).unwrap();
        assert_eq!(
            served,
            vec![(FILES[3].to_string(), format!("{}/good/", server.base))]
        );
        assert_eq!(server.requests(), vec![format!("/good/{}.gz", FILES[3])]);
        assert_eq!(
            idx::read_decompressed(&gz_path(d, FILES[3])).unwrap(),
            data[FILES[3]]
        );
        assert!(!d.join(format!("{}.gz.part", FILES[3])).exists());

        // Everything present now: no request at all (nothing listens).
        let opts = options("http://127.0.0.1:9", &["good"], 0);
        let served =
            download_with_expected(DatasetName::Mnist, d, &opts, expectations(&data)).unwrap();
        assert!(served.is_empty());
    }

    #[test]
    fn unwritable_destination_is_a_local_error_not_a_mirror_failure() {
        let data = Arc::new(tiny_dataset(5));
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"x").unwrap();
        let dest: PathBuf = blocker.join("sub");
        let opts = options("http://127.0.0.1:9", &["good"], 3);
        let err = download_with_expected(DatasetName::Mnist, &dest, &opts, expectations(&data))
            .unwrap_err();
        assert!(matches!(err, DataError::Io { .. }), "{err}");
        assert!(err.to_string().contains(&dest.display().to_string()));
    }
}
