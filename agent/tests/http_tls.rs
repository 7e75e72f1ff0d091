//! HTTPS with a private CA (`[http] ca_file`) and mutual TLS
//! (`client_cert`, `client_key`), against Python's TLS server on
//! 127.0.0.1 with certificates made by `openssl` for the test.

mod common;

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::tls::pki;
use common::*;
use tandem::bundle::manifest::Compression;
use tandem::install::Options;
use tandem::slot::SlotGroup;

struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const SERVE: &str = r#"
import http.server, ssl, sys, functools
root, pki, port, mtls = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(pki + "/server.pem", pki + "/server.key")
if mtls:
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(pki + "/ca.pem")
h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=root)
s = http.server.ThreadingHTTPServer(("127.0.0.1", port), h)
s.socket = ctx.wrap_socket(s.socket, server_side=True)
s.serve_forever()
"#;

fn serve_tls(root: &Path, pki: &Path, mtls: bool) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("python3")
        .args(["-c", SERVE])
        .arg(root)
        .arg(pki)
        .arg(port.to_string())
        .arg(if mtls { "1" } else { "0" })
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the TLS server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Server { child, port }
}

fn install(fx: &Fx, url: &str) -> Result<(), String> {
    tandem::ops::install(&fx.settings(), url, &Options::default(), &mut |_| {})
        .map(drop)
        .map_err(|e| e.to_string())
}

#[test]
fn a_private_ca_and_a_client_certificate() {
    let mut fx = Fx::new(&["rootfs"]);
    let pki_dir = fx.path("pki");
    std::fs::create_dir(&pki_dir).unwrap();
    pki(&pki_dir);
    let img = pattern(300_000, 4);
    fx.bundle("u.tnd", "1.1.0", &[("rootfs", &img, Compression::None)]);
    let p = pki_dir.display();
    let base = "[http]\nretries = 0\nconnect_timeout_secs = 5\n";

    let server = serve_tls(fx.dir.path(), &pki_dir, false);
    let url = format!("https://127.0.0.1:{}/u.tnd", server.port);
    // The built-in roots do not know the test CA.
    fx.extra_config = base.into();
    let e = install(&fx, &url).unwrap_err();
    assert!(
        e.contains("certificate") || e.contains("UnknownIssuer"),
        "{e}"
    );
    // With it as ca_file the same server is trusted.
    fx.extra_config = format!("{base}ca_file = \"{p}/ca.pem\"\n");
    install(&fx, &url).unwrap();
    assert_eq!(&fx.slot(SlotGroup::B, "rootfs")[..img.len()], &img[..]);
    drop(server);

    // Mutual TLS: refused without a client certificate, fine with one.
    let server = serve_tls(fx.dir.path(), &pki_dir, true);
    let url = format!("https://127.0.0.1:{}/u.tnd", server.port);
    let e = install(&fx, &url).unwrap_err();
    assert!(e.contains("giving up"), "{e}");
    fx.extra_config = format!(
        "{base}ca_file = \"{p}/ca.pem\"\nclient_cert = \"{p}/client.pem\"\nclient_key = \"{p}/client.key\"\n"
    );
    // (1.1.0 is installed in b now; reinstalling it is not a replay of
    // the running 1.0.0, so no --force is needed.)
    install(&fx, &url).unwrap();
    // A missing key file is a configuration error naming the key.
    fx.extra_config = format!(
        "{base}ca_file = \"{p}/ca.pem\"\nclient_cert = \"{p}/client.pem\"\nclient_key = \"{p}/nope.key\"\n"
    );
    let e = install(&fx, &url).unwrap_err();
    assert!(e.contains("client_key") && e.contains("nope.key"), "{e}");
}
