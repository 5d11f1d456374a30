//! The driver's userspace TCP/IP stack (smoltcp), without the device: IP
//! packets go in with [`Stack::input`] and come out of [`Stack::output`].
//!
//! Only mapped hosts exist: a SYN to a mapped address and port gets a
//! listening socket just in time (any number of connections per port), a
//! SYN to any other port is answered with a reset by the stack, ICMP echo
//! to a mapped host is answered, and everything else is dropped. Each
//! established connection is handed out once ([`Accepted`]) as a
//! [`TunSource`] and a [`TunSink`]: bounded queues, so a slow side closes
//! the TCP window instead of buffering without limit.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use bytes::{Buf, Bytes};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{HardwareAddress, IpListenEndpoint, IpProtocol, Ipv4Packet, TcpPacket};
use tokio::sync::{Notify, mpsc};

use crate::proxy::tcp::{Sink, Source};

/// The MTU of the TUN device and the stack: as large as a TUN device
/// takes, so the kernel hands over (and takes) 64 KiB segments like on
/// loopback instead of one syscall per 1460 bytes.
pub const MTU: usize = 65_535;
/// Each connection's receive and send buffer in the stack.
const SOCKET_BUFFER: usize = 256 * 1024;
/// Largest chunk handed to a session at once.
const CHUNK: usize = 64 * 1024;
/// Chunks queued between the stack and a session, each way.
const QUEUE: usize = 4;
/// Most sockets waiting for SYNs on one address and port at once.
const MAX_LISTENING: usize = 1024;

/// What a session sends to its connection.
#[derive(Debug)]
enum Cmd {
    Data(Bytes),
    /// End of stream (FIN) after the data before it.
    Finish,
    /// A reset: the session was refused or failed.
    Reset,
}

/// The session's read side of a connection: what the client sent.
#[derive(Debug)]
pub struct TunSource {
    rx: mpsc::Receiver<Bytes>,
    wake: Arc<Notify>,
}

impl Source for TunSource {
    async fn recv(&mut self) -> Option<io::Result<Bytes>> {
        let chunk = self.rx.recv().await;
        // Room again: the stack may move more out of the socket.
        self.wake.notify_one();
        chunk.map(Ok)
    }
}

/// The session's write side of a connection: towards the client.
#[derive(Debug, Clone)]
pub struct TunSink {
    tx: mpsc::Sender<Cmd>,
    wake: Arc<Notify>,
}

impl TunSink {
    /// Ends the connection with a TCP reset (a refusal is never a hang).
    pub async fn reset(&self) {
        let _ = self.tx.send(Cmd::Reset).await;
        self.wake.notify_one();
    }
}

impl Sink for TunSink {
    async fn send(&mut self, data: Bytes) -> io::Result<()> {
        self.tx
            .send(Cmd::Data(data))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "connection closed"))?;
        self.wake.notify_one();
        Ok(())
    }

    async fn finish(&mut self) {
        let _ = self.tx.send(Cmd::Finish).await;
        self.wake.notify_one();
    }
}

/// A connection established to a mapped address and port.
#[derive(Debug)]
pub struct Accepted<T> {
    /// What the address and port map to.
    pub target: T,
    /// The mapped address and port the client connected to.
    pub local: SocketAddrV4,
    /// The client's address.
    pub peer: SocketAddrV4,
    pub source: TunSource,
    pub sink: TunSink,
}

/// One connection's plumbing on the stack's side.
struct Conn {
    local: SocketAddrV4,
    /// Towards the session; `None` once the client's end of stream passed.
    to_app: Option<mpsc::Sender<Bytes>>,
    from_app: mpsc::Receiver<Cmd>,
    /// The part of the last chunk the socket had no room for.
    pending: Option<Bytes>,
    /// The session finished or reset its side.
    app_done: bool,
}

/// Packet queues between the device and the stack.
#[derive(Default)]
struct Queues {
    rx: VecDeque<Vec<u8>>,
    tx: VecDeque<Vec<u8>>,
}

struct Rx(Vec<u8>);
struct Tx<'a>(&'a mut VecDeque<Vec<u8>>);

impl smoltcp::phy::RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl smoltcp::phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0; len];
        let r = f(&mut buf);
        self.0.push_back(buf);
        r
    }
}

impl Device for Queues {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _: Instant) -> Option<(Rx, Tx<'_>)> {
        let packet = self.rx.pop_front()?;
        Some((Rx(packet), Tx(&mut self.tx)))
    }

    fn transmit(&mut self, _: Instant) -> Option<Tx<'_>> {
        Some(Tx(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = MTU;
        caps
    }
}

/// The stack over a table of mapped addresses and ports.
pub struct Stack<T> {
    iface: Interface,
    device: Queues,
    sockets: SocketSet<'static>,
    /// Mapped address and port -> what it maps to.
    ports: HashMap<SocketAddrV4, T>,
    /// Mapped hosts (they answer ICMP echo).
    hosts: HashSet<Ipv4Addr>,
    /// Sockets listening, per mapped address and port.
    listening: HashMap<SocketAddrV4, Vec<SocketHandle>>,
    /// SYNs queued since the last poll, per mapped address and port: each
    /// needs a listening socket of its own.
    syns: HashMap<SocketAddrV4, usize>,
    /// Connections handed out or about to be.
    conns: HashMap<SocketHandle, Conn>,
    /// Sockets between SYN and the handshake's end, with their endpoint.
    opening: HashMap<SocketHandle, SocketAddrV4>,
    /// Closed sockets kept for one more poll, so their reset goes out.
    closing: Vec<SocketHandle>,
    wake: Arc<Notify>,
}

impl<T> std::fmt::Debug for Stack<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("ports", &self.ports.len())
            .field("connections", &self.conns.len())
            .finish_non_exhaustive()
    }
}

impl<T: Clone> Stack<T> {
    /// An empty stack; `wake` is notified when a session moved data.
    pub fn new(wake: Arc<Notify>) -> Self {
        let mut device = Queues::default();
        let mut iface = Interface::new(Config::new(HardwareAddress::Ip), &mut device, now());
        // Every address the device carries is ours: [`Stack::input`] lets
        // only mapped hosts through.
        iface.set_any_ip(true);
        Stack {
            iface,
            device,
            sockets: SocketSet::new(Vec::new()),
            ports: HashMap::new(),
            hosts: HashSet::new(),
            listening: HashMap::new(),
            syns: HashMap::new(),
            conns: HashMap::new(),
            opening: HashMap::new(),
            closing: Vec::new(),
            wake,
        }
    }

    /// Replaces the table. Ports no longer mapped stop listening; their
    /// live connections go on (the session engine ends them).
    pub fn set_ports(&mut self, ports: HashMap<SocketAddrV4, T>) {
        self.hosts = ports.keys().map(|a| *a.ip()).collect();
        let gone: Vec<SocketAddrV4> = self
            .listening
            .keys()
            .filter(|a| !ports.contains_key(a))
            .copied()
            .collect();
        for a in gone {
            for h in self.listening.remove(&a).unwrap_or_default() {
                self.sockets.remove(h);
            }
        }
        self.ports = ports;
    }

    /// How many connections are open.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// One IP packet from the device.
    pub fn input(&mut self, packet: &[u8]) {
        let Ok(ip) = Ipv4Packet::new_checked(packet) else {
            return;
        };
        let dst = ip.dst_addr();
        match ip.next_header() {
            IpProtocol::Icmp if self.hosts.contains(&dst) => {}
            IpProtocol::Tcp => {
                let Ok(tcp) = TcpPacket::new_checked(ip.payload()) else {
                    return;
                };
                let local = SocketAddrV4::new(dst, tcp.dst_port());
                if tcp.syn() && !tcp.ack() && self.ports.contains_key(&local) {
                    self.listen(local);
                }
                // Anything else reaches no socket: the stack resets it.
            }
            _ => return,
        }
        self.device.rx.push_back(packet.to_vec());
    }

    /// One more listening socket for `local` unless enough already wait for
    /// the SYNs queued since the last poll.
    fn listen(&mut self, local: SocketAddrV4) {
        let queued = self.syns.entry(local).or_default();
        *queued += 1;
        let queued = *queued;
        let waiting = self.listening.get(&local).map_or(0, |hs| {
            hs.iter()
                .filter(|h| self.sockets.get::<tcp::Socket>(**h).state() == tcp::State::Listen)
                .count()
        });
        if waiting >= queued || waiting >= MAX_LISTENING {
            return;
        }
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; SOCKET_BUFFER]),
            tcp::SocketBuffer::new(vec![0; SOCKET_BUFFER]),
        );
        socket.set_nagle_enabled(false);
        socket.set_ack_delay(None);
        if socket
            .listen(IpListenEndpoint {
                addr: Some((*local.ip()).into()),
                port: local.port(),
            })
            .is_err()
        {
            return;
        }
        let h = self.sockets.add(socket);
        self.listening.entry(local).or_default().push(h);
    }

    /// One IP packet for the device, if any.
    pub fn output(&mut self) -> Option<Vec<u8>> {
        self.device.tx.pop_front()
    }

    /// How long until [`Stack::poll`] has timers to run.
    pub fn poll_delay(&mut self) -> Option<std::time::Duration> {
        self.iface
            .poll_delay(now(), &self.sockets)
            .map(|d| std::time::Duration::from_micros(d.total_micros()))
    }

    /// Runs the stack: handles queued packets and timers, moves data
    /// between sockets and sessions; returns the connections established
    /// since the last call.
    pub fn poll(&mut self) -> Vec<Accepted<T>> {
        let mut accepted = Vec::new();
        // Twice: data a session queued may free room for more, and what
        // the sockets took needs sending.
        for _ in 0..2 {
            self.iface.poll(now(), &mut self.device, &mut self.sockets);
            self.promote(&mut accepted);
            self.pump();
        }
        accepted
    }

    /// Listening sockets that took a SYN become connections once established.
    fn promote(&mut self, accepted: &mut Vec<Accepted<T>>) {
        self.syns.clear();
        for (local, hs) in &mut self.listening {
            hs.retain(|h| {
                let taken = self.sockets.get::<tcp::Socket>(*h).state() != tcp::State::Listen;
                if taken {
                    self.opening.insert(*h, *local);
                }
                !taken
            });
        }
        self.listening.retain(|_, hs| !hs.is_empty());
        let opening: Vec<(SocketHandle, SocketAddrV4)> =
            self.opening.iter().map(|(h, a)| (*h, *a)).collect();
        for (h, local) in opening {
            let socket = self.sockets.get::<tcp::Socket>(h);
            match socket.state() {
                tcp::State::SynReceived | tcp::State::Listen => continue,
                tcp::State::Closed | tcp::State::TimeWait => {
                    self.opening.remove(&h);
                    self.sockets.remove(h);
                    continue;
                }
                _ => {}
            }
            self.opening.remove(&h);
            let peer = match socket.remote_endpoint().map(|e| e.addr) {
                Some(smoltcp::wire::IpAddress::Ipv4(ip)) => {
                    SocketAddrV4::new(ip, socket.remote_endpoint().map(|e| e.port).unwrap_or(0))
                }
                _ => {
                    self.sockets.get_mut::<tcp::Socket>(h).abort();
                    self.opening.insert(h, local);
                    continue;
                }
            };
            let Some(target) = self.ports.get(&local).cloned() else {
                // Unmapped while the handshake ran.
                self.sockets.get_mut::<tcp::Socket>(h).abort();
                self.opening.insert(h, local);
                continue;
            };
            let (to_app, rx) = mpsc::channel(QUEUE);
            let (tx, from_app) = mpsc::channel(QUEUE);
            self.conns.insert(
                h,
                Conn {
                    local,
                    to_app: Some(to_app),
                    from_app,
                    pending: None,
                    app_done: false,
                },
            );
            accepted.push(Accepted {
                target,
                local,
                peer,
                source: TunSource {
                    rx,
                    wake: self.wake.clone(),
                },
                sink: TunSink {
                    tx,
                    wake: self.wake.clone(),
                },
            });
        }
    }

    /// Moves data between every connection's socket and its session.
    fn pump(&mut self) {
        // Closed last time: an `iface.poll` ran since, so their reset went out.
        for h in self.closing.drain(..) {
            self.sockets.remove(h);
        }
        let mut closed = Vec::new();
        for (h, conn) in &mut self.conns {
            let socket = self.sockets.get_mut::<tcp::Socket>(*h);
            // Session -> client.
            while !conn.app_done {
                if let Some(mut data) = conn.pending.take() {
                    let n = socket.send_slice(&data).unwrap_or(0);
                    data.advance(n);
                    if !data.is_empty() {
                        conn.pending = Some(data);
                        break;
                    }
                }
                match conn.from_app.try_recv() {
                    Ok(Cmd::Data(data)) => conn.pending = Some(data),
                    Ok(Cmd::Finish) => {
                        conn.app_done = true;
                        socket.close();
                    }
                    Ok(Cmd::Reset) | Err(mpsc::error::TryRecvError::Disconnected) => {
                        conn.app_done = true;
                        socket.abort();
                    }
                    Err(mpsc::error::TryRecvError::Empty) => break,
                }
            }
            // Client -> session, while the session has room.
            if let Some(to_app) = &conn.to_app {
                while socket.can_recv() {
                    let Ok(permit) = to_app.try_reserve() else {
                        break;
                    };
                    let chunk = socket
                        .recv(|buf| {
                            let n = buf.len().min(CHUNK);
                            (n, Bytes::copy_from_slice(&buf[..n]))
                        })
                        .unwrap_or_default();
                    if chunk.is_empty() {
                        break;
                    }
                    permit.send(chunk);
                }
                if !socket.may_recv() && !socket.can_recv() {
                    // The client's FIN (or a reset): end of stream.
                    conn.to_app = None;
                }
            }
            if socket.state() == tcp::State::Closed {
                closed.push(*h);
            }
        }
        for h in closed {
            if let Some(conn) = self.conns.remove(&h) {
                tracing::debug!(local = %conn.local, "ip connect driver connection closed");
            }
            self.closing.push(h);
        }
    }
}

fn now() -> Instant {
    Instant::now()
}

#[cfg(test)]
mod tests {
    use smoltcp::wire::{
        Icmpv4Packet, Icmpv4Repr, IpAddress, Ipv4Repr, TcpControl, TcpRepr, TcpSeqNumber,
    };

    use super::*;

    const CLIENT: Ipv4Addr = Ipv4Addr::new(100, 100, 0, 1);
    const HOST: Ipv4Addr = Ipv4Addr::new(100, 100, 7, 9);

    fn stack() -> Stack<&'static str> {
        let mut s = Stack::new(Arc::new(Notify::new()));
        s.set_ports(HashMap::from([(SocketAddrV4::new(HOST, 8080), "web")]));
        s
    }

    fn ip_packet(dst: Ipv4Addr, protocol: IpProtocol, payload_len: usize) -> (Vec<u8>, Ipv4Repr) {
        let repr = Ipv4Repr {
            src_addr: CLIENT,
            dst_addr: dst,
            next_header: protocol,
            payload_len,
            hop_limit: 64,
        };
        (vec![0; repr.buffer_len() + payload_len], repr)
    }

    fn syn(dst: Ipv4Addr, port: u16) -> Vec<u8> {
        let tcp = TcpRepr {
            src_port: 40000,
            dst_port: port,
            control: TcpControl::Syn,
            seq_number: TcpSeqNumber(1000),
            ack_number: None,
            window_len: 64000,
            window_scale: None,
            max_seg_size: Some(1400),
            sack_permitted: false,
            sack_ranges: [None, None, None],
            timestamp: None,
            payload: &[],
        };
        let (mut buf, ip) = ip_packet(dst, IpProtocol::Tcp, tcp.buffer_len());
        let mut p = Ipv4Packet::new_unchecked(&mut buf);
        ip.emit(&mut p, &smoltcp::phy::ChecksumCapabilities::default());
        let mut t = TcpPacket::new_unchecked(p.payload_mut());
        tcp.emit(
            &mut t,
            &IpAddress::Ipv4(CLIENT),
            &IpAddress::Ipv4(dst),
            &smoltcp::phy::ChecksumCapabilities::default(),
        );
        buf
    }

    fn echo(dst: Ipv4Addr) -> Vec<u8> {
        let icmp = Icmpv4Repr::EchoRequest {
            ident: 7,
            seq_no: 1,
            data: b"ping",
        };
        let (mut buf, ip) = ip_packet(dst, IpProtocol::Icmp, icmp.buffer_len());
        let mut p = Ipv4Packet::new_unchecked(&mut buf);
        ip.emit(&mut p, &smoltcp::phy::ChecksumCapabilities::default());
        let mut i = Icmpv4Packet::new_unchecked(p.payload_mut());
        icmp.emit(&mut i, &smoltcp::phy::ChecksumCapabilities::default());
        buf
    }

    /// The flags of the one TCP answer.
    fn answer(s: &mut Stack<&'static str>) -> (bool, bool, bool) {
        s.poll();
        let out = s.output().expect("an answer");
        let ip = Ipv4Packet::new_checked(&out[..]).unwrap();
        assert_eq!((ip.src_addr(), ip.dst_addr()), (HOST, CLIENT));
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        (tcp.syn(), tcp.ack(), tcp.rst())
    }

    #[test]
    fn a_mapped_port_answers_a_syn() {
        let mut s = stack();
        s.input(&syn(HOST, 8080));
        assert_eq!(answer(&mut s), (true, true, false));
    }

    #[test]
    fn simultaneous_syns_each_get_a_socket() {
        let mut s = stack();
        for port in [40000, 40001, 40002] {
            let mut p = syn(HOST, 8080);
            // Another client port (and its checksum) per SYN.
            let mut ip = Ipv4Packet::new_unchecked(&mut p[..]);
            let mut tcp = TcpPacket::new_unchecked(ip.payload_mut());
            tcp.set_src_port(port);
            tcp.fill_checksum(&IpAddress::Ipv4(CLIENT), &IpAddress::Ipv4(HOST));
            s.input(&p);
        }
        s.poll();
        let mut synacks = 0;
        while let Some(out) = s.output() {
            let ip = Ipv4Packet::new_checked(&out[..]).unwrap();
            let t = TcpPacket::new_checked(ip.payload()).unwrap();
            assert!(!t.rst(), "a simultaneous SYN was reset");
            synacks += usize::from(t.syn() && t.ack());
        }
        assert_eq!(synacks, 3);
    }

    #[test]
    fn a_port_with_no_service_is_reset() {
        let mut s = stack();
        s.input(&syn(HOST, 8081));
        assert_eq!(answer(&mut s), (false, true, true));
    }

    #[test]
    fn echo_answers_for_mapped_hosts_only() {
        let mut s = stack();
        s.input(&echo(HOST));
        s.poll();
        let out = s.output().expect("an echo reply");
        let ip = Ipv4Packet::new_checked(&out[..]).unwrap();
        let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        assert_eq!((ip.src_addr(), ip.dst_addr()), (HOST, CLIENT));
        assert_eq!(
            icmp.msg_type(),
            smoltcp::wire::Icmpv4Message::EchoReply,
            "{icmp:?}"
        );
        s.input(&echo(Ipv4Addr::new(100, 100, 7, 10)));
        s.poll();
        assert!(s.output().is_none(), "an unmapped host must stay silent");
    }

    /// The ACK completing the handshake the stack answered in `synack`.
    fn ack(synack: &[u8]) -> Vec<u8> {
        let ip = Ipv4Packet::new_checked(synack).unwrap();
        let t = TcpPacket::new_checked(ip.payload()).unwrap();
        let tcp = TcpRepr {
            src_port: 40000,
            dst_port: t.src_port(),
            control: TcpControl::None,
            seq_number: TcpSeqNumber(1001),
            ack_number: Some(t.seq_number() + 1),
            window_len: 64000,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [None, None, None],
            timestamp: None,
            payload: &[],
        };
        let (mut buf, ipr) = ip_packet(HOST, IpProtocol::Tcp, tcp.buffer_len());
        let mut p = Ipv4Packet::new_unchecked(&mut buf);
        ipr.emit(&mut p, &smoltcp::phy::ChecksumCapabilities::default());
        let mut tp = TcpPacket::new_unchecked(p.payload_mut());
        tcp.emit(
            &mut tp,
            &IpAddress::Ipv4(CLIENT),
            &IpAddress::Ipv4(HOST),
            &smoltcp::phy::ChecksumCapabilities::default(),
        );
        buf
    }

    #[tokio::test]
    async fn an_accepted_connection_refused_by_its_session_is_reset() {
        let mut s = stack();
        s.input(&syn(HOST, 8080));
        s.poll();
        let synack = s.output().expect("a SYN-ACK");
        s.input(&ack(&synack));
        let accepted = s.poll();
        assert_eq!(accepted.len(), 1);
        let a = accepted.into_iter().next().unwrap();
        assert_eq!(
            (a.target, a.local.port(), *a.peer.ip()),
            ("web", 8080, CLIENT)
        );
        while s.output().is_some() {}
        a.sink.reset().await;
        drop(a.sink);
        s.poll();
        let mut rst = false;
        while let Some(out) = s.output() {
            let ip = Ipv4Packet::new_checked(&out[..]).unwrap();
            rst |= TcpPacket::new_checked(ip.payload()).unwrap().rst();
        }
        assert!(rst, "no reset after the session's refusal");
        assert_eq!(s.connections(), 0);
    }

    #[test]
    fn an_unmapped_port_stops_listening() {
        let mut s = stack();
        s.set_ports(HashMap::new());
        s.input(&syn(HOST, 8080));
        assert_eq!(answer(&mut s), (false, true, true));
    }
}
