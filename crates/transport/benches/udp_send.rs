//! What batching a media port's sends would save (issue 16): 132 datagrams (one per call of
//! a tick at 80 % of the codec limit on 2 vCPUs) to 132 loopback sockets, one `sendto` each
//! against `sendmmsg` in batches of 8 and 32. Only the sends are timed; the receiving
//! sockets are drained between rounds, outside the timing, and nobody waits on them: this is the sender's syscall and
//! UDP stack cost alone, without waking a receiver (which a far end blocked in `epoll` adds
//! to the sender on loopback, and a NIC does not).
//!
//! `cargo bench -p appmedia-transport --bench udp_send`

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const CALLS: usize = 132;

struct Fixture {
    receivers: Vec<UdpSocket>,
    to: Vec<libc::sockaddr_in>,
    sender: UdpSocket,
    payload: [u8; 92],
}

impl Fixture {
    fn new() -> Fixture {
        let receivers: Vec<UdpSocket> = (0..CALLS)
            .map(|_| UdpSocket::bind("127.0.0.1:0").expect("a loopback socket"))
            .collect();
        let to = receivers
            .iter()
            .map(|r| match r.local_addr().expect("bound") {
                SocketAddr::V4(a) => libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(a.ip().octets()),
                    },
                    sin_zero: [0; 8],
                },
                SocketAddr::V6(_) => unreachable!("bound to 127.0.0.1"),
            })
            .collect();
        for r in &receivers {
            r.set_nonblocking(true).expect("non-blocking");
        }
        Fixture {
            receivers,
            to,
            sender: UdpSocket::bind("127.0.0.1:0").expect("a loopback socket"),
            payload: [0x80; 92],
        }
    }

    fn drain(&self) {
        let mut buf = [0u8; 2048];
        for r in &self.receivers {
            while r.recv(&mut buf).is_ok() {}
        }
    }

    /// One `sendto` per datagram.
    fn send_each(&self) {
        for to in &self.to {
            // SAFETY: a valid socket, buffer and address for the duration of the call.
            let n = unsafe {
                libc::sendto(
                    self.sender.as_raw_fd(),
                    self.payload.as_ptr().cast(),
                    self.payload.len(),
                    0,
                    (to as *const libc::sockaddr_in).cast(),
                    size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            };
            assert_eq!(n, self.payload.len() as isize);
        }
    }

    /// `sendmmsg` with `batch` datagrams per call.
    fn send_batched(&self, batch: usize) {
        let mut iov = libc::iovec {
            iov_base: self.payload.as_ptr() as *mut libc::c_void,
            iov_len: self.payload.len(),
        };
        for chunk in self.to.chunks(batch) {
            let mut headers: Vec<libc::mmsghdr> = chunk
                .iter()
                .map(|to| {
                    // SAFETY: an all-zero mmsghdr is a valid empty header.
                    let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                    h.msg_hdr.msg_name = (to as *const libc::sockaddr_in).cast_mut().cast();
                    h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
                    h.msg_hdr.msg_iov = &mut iov;
                    h.msg_hdr.msg_iovlen = 1;
                    h
                })
                .collect();
            // SAFETY: `headers` points at live addresses and one live iovec each.
            let n = unsafe {
                libc::sendmmsg(
                    self.sender.as_raw_fd(),
                    headers.as_mut_ptr(),
                    headers.len() as libc::c_uint,
                    0,
                )
            };
            assert_eq!(n as usize, chunk.len());
        }
    }
}

/// Times `send` alone, draining the receivers after each round outside the timing.
fn timed(fixture: &Fixture, iters: u64, send: impl Fn(&Fixture)) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let t0 = Instant::now();
        send(fixture);
        total += t0.elapsed();
        fixture.drain();
    }
    total
}

fn udp_send(c: &mut Criterion) {
    let fixture = Fixture::new();
    let mut group = c.benchmark_group("udp_send_132");
    group.throughput(Throughput::Elements(CALLS as u64));
    group.bench_function("sendto_each", |b| {
        b.iter_custom(|iters| timed(&fixture, iters, Fixture::send_each))
    });
    for batch in [8, 32] {
        group.bench_with_input(BenchmarkId::new("sendmmsg", batch), &batch, |b, &batch| {
            b.iter_custom(|iters| timed(&fixture, iters, |f| f.send_batched(batch)))
        });
    }
    group.finish();
}

criterion_group!(benches, udp_send);
criterion_main!(benches);
