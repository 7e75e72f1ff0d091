//! The FleetLock client against a FleetLock server whose semaphore lives
//! in a real etcd: at most N hosts of a group hold a reboot slot, a
//! request repeats harmlessly, and the semaphore outlives the server.

mod common;

use common::fleetlock::{Etcd, FleetLock};
use tandem::channel::fleetlock::{Client, LockError};
use tandem::config::HttpSettings;

fn client(url: &str, id: &str, group: &str) -> Client {
    Client::new(url, id, group, &HttpSettings::default()).unwrap()
}

#[test]
fn one_slot_per_group_kept_in_etcd() {
    if !common::tools::have("etcd") {
        return common::tools::skip("one_slot_per_group_kept_in_etcd", "etcd (etcd-server)");
    }
    let etcd = Etcd::start();
    let server = FleetLock::start(&etcd, 1);
    let (a, b) = (
        client(&server.url, "host-a", "web"),
        client(&server.url, "host-b", "web"),
    );
    let other_group = client(&server.url, "host-c", "db");

    a.pre_reboot().unwrap();
    a.pre_reboot()
        .expect("asking again while holding it is fine");
    match b.pre_reboot() {
        Err(LockError::Refused { kind, value, .. }) => {
            assert_eq!(kind, "failed_lock");
            assert!(value.contains("host-a"), "{value}");
        }
        r => panic!("b must wait for a: {r:?}"),
    }
    other_group.pre_reboot().expect("groups are separate");

    // The semaphore is in etcd, not in the server.
    drop(server);
    let server = FleetLock::start(&etcd, 1);
    let (a, b) = (
        client(&server.url, "host-a", "web"),
        client(&server.url, "host-b", "web"),
    );
    assert!(
        matches!(b.pre_reboot(), Err(LockError::Refused { .. })),
        "a still holds it"
    );
    a.steady_state().unwrap();
    a.steady_state().expect("releasing twice is fine");
    b.pre_reboot().expect("a's slot is free");
}

#[test]
fn a_server_without_the_protocol_is_an_error_not_a_grant() {
    let srv = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", srv.local_addr().unwrap());
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut s, _) = srv.accept().unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf);
        let _ = s.write_all(b"HTTP/1.1 500 Oops\r\ncontent-length: 4\r\n\r\noops");
    });
    let e = client(&url, "h", "g").pre_reboot().unwrap_err().to_string();
    assert!(
        e.contains("HTTP 500 without a FleetLock error body") && e.contains("/v1/pre-reboot"),
        "{e}"
    );
}
