//! A test LAN of network namespaces, for partitions: [`Lan`] creates one namespace per node,
//! each joined by a veth pair to a bridge in the test's own namespace, where etcd and the
//! test's clients live on two addresses of the bridge:
//!
//! ```text
//!   test namespace: bridge apb<id>  10.<a>.<b>.1 (clients)  10.<a>.<b>.2 (etcd)
//!        ├─ veth ap<id>h1 ── ap<id>c1 in namespace ap<id>n1: 10.<a>.<b>.11 (node 0)
//!        ├─ veth ap<id>h2 ── ap<id>c2 in namespace ap<id>n2: 10.<a>.<b>.12 (node 1)
//!        └─ …
//! ```
//!
//! [`Lan::isolate`] cuts a node off from etcd and from its peers with blackhole routes in
//! the namespaces (packets silently dropped, as on a dead link; no firewall needed), while
//! the clients on `.1` still reach it; [`Lan::heal`] removes them. Everything is removed on
//! drop. Needs root and `ip` (iproute2); traffic never leaves the machine.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, bail};

/// How many nodes a LAN can hold (host addresses .11 ….(10+MAX_NODES)).
const MAX_NODES: usize = 9;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Network namespaces joined by a bridge; see the module docs.
pub struct Lan {
    id: String,
    subnet: [u8; 3],
    nodes: usize,
    /// Nodes currently isolated.
    isolated: Vec<bool>,
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .with_context(|| format!("run ip {} (apt-get install -y iproute2)", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Lan {
    /// Creates the bridge and `nodes` namespaces (each with its loopback up).
    pub fn create(nodes: usize) -> anyhow::Result<Lan> {
        if nodes == 0 || nodes > MAX_NODES {
            bail!("a test LAN holds 1 to {MAX_NODES} nodes, not {nodes}");
        }
        // Unique per test process and per LAN within it: interface names stay within 15
        // bytes, subnets do not collide between tests running in parallel.
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let id = format!("{}{}", pid % 100_000, n);
        let key = pid.wrapping_mul(31).wrapping_add(n);
        let subnet = [10, 100 + (key % 100) as u8, ((key / 100) % 250) as u8];
        let mut lan = Lan {
            id,
            subnet,
            nodes: 0,
            isolated: vec![false; nodes],
        };
        let bridge = lan.bridge();
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", lan.client_ip()),
            "dev",
            &bridge,
        ])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", lan.etcd_ip()),
            "dev",
            &bridge,
        ])?;
        ip(&["link", "set", &bridge, "up"])?;
        for k in 0..nodes {
            lan.add_node(k)?;
            lan.nodes = k + 1;
        }
        Ok(lan)
    }

    fn bridge(&self) -> String {
        format!("apb{}", self.id)
    }

    /// Node `i`'s namespace name (for `ip netns exec`).
    pub fn namespace(&self, i: usize) -> String {
        format!("ap{}n{}", self.id, i + 1)
    }

    fn host_end(&self, i: usize) -> String {
        format!("ap{}h{}", self.id, i + 1)
    }

    fn node_end(&self, i: usize) -> String {
        format!("ap{}c{}", self.id, i + 1)
    }

    fn addr(&self, host: u8) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, host)
    }

    /// The test's clients' address (the bridge's first).
    pub fn client_ip(&self) -> Ipv4Addr {
        self.addr(1)
    }

    /// etcd's address (the bridge's second).
    pub fn etcd_ip(&self) -> Ipv4Addr {
        self.addr(2)
    }

    /// Node `i`'s address, in its namespace.
    pub fn node_ip(&self, i: usize) -> Ipv4Addr {
        self.addr(11 + i as u8)
    }

    fn add_node(&self, i: usize) -> anyhow::Result<()> {
        let (ns, host, node) = (self.namespace(i), self.host_end(i), self.node_end(i));
        ip(&["netns", "add", &ns])?;
        ip(&["link", "add", &host, "type", "veth", "peer", "name", &node])?;
        ip(&["link", "set", &node, "netns", &ns])?;
        ip(&["link", "set", &host, "master", &self.bridge()])?;
        ip(&["link", "set", &host, "up"])?;
        let inside = |args: &[&str]| {
            let mut all = vec!["-n", ns.as_str()];
            all.extend_from_slice(args);
            ip(&all)
        };
        inside(&["link", "set", "lo", "up"])?;
        inside(&[
            "addr",
            "add",
            &format!("{}/24", self.node_ip(i)),
            "dev",
            &node,
        ])?;
        inside(&["link", "set", &node, "up"])?;
        Ok(())
    }

    /// Runs `f` on a thread of its own inside node `i`'s namespace (sockets it opens are
    /// that node's); its result.
    pub fn in_namespace<T: Send + 'static>(
        &self,
        i: usize,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        let path = format!("/var/run/netns/{}", self.namespace(i));
        let ns = std::fs::File::open(&path).with_context(|| format!("open {path}"))?;
        std::thread::spawn(move || {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map(|()| f())
                .map_err(|e| anyhow::anyhow!("setns into {path}: {e}"))
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the thread in the namespace panicked"))?
    }

    fn routes(&self, i: usize, op: &str) -> anyhow::Result<()> {
        let blackhole =
            |ns: &str, to: Ipv4Addr| ip(&["-n", ns, "route", op, "blackhole", &format!("{to}/32")]);
        let ns = self.namespace(i);
        blackhole(&ns, self.etcd_ip())?;
        for peer in (0..self.nodes).filter(|&j| j != i) {
            blackhole(&ns, self.node_ip(peer))?;
            blackhole(&self.namespace(peer), self.node_ip(i))?;
        }
        Ok(())
    }

    /// Cuts node `i` off from etcd and from every peer (both directions); the clients still
    /// reach it and it them.
    pub fn isolate(&mut self, i: usize) -> anyhow::Result<()> {
        if !self.isolated[i] {
            self.routes(i, "add")?;
            self.isolated[i] = true;
        }
        Ok(())
    }

    /// Undoes [`isolate`](Self::isolate).
    pub fn heal(&mut self, i: usize) -> anyhow::Result<()> {
        if self.isolated[i] {
            self.routes(i, "del")?;
            self.isolated[i] = false;
        }
        Ok(())
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for i in 0..self.nodes {
            // Deleting a namespace destroys its veth end, and with it the host end.
            let _ = ip(&["netns", "del", &self.namespace(i)]);
            let _ = ip(&["link", "del", &self.host_end(i)]);
        }
        let _ = ip(&["link", "del", &self.bridge()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::time::Duration;

    fn connects(to: SocketAddr) -> bool {
        TcpStream::connect_timeout(&to, Duration::from_millis(500)).is_ok()
    }

    /// Whether node `from` can open a TCP connection to `to`.
    fn reaches(lan: &Lan, from: usize, to: SocketAddr) -> bool {
        lan.in_namespace(from, move || connects(to))
            .expect("run in the namespace")
    }

    #[test]
    fn isolate_cuts_etcd_and_peers_but_not_clients_and_heal_restores() {
        let mut lan = Lan::create(3).expect("create a LAN (needs root and iproute2)");
        let listen = |ip: Ipv4Addr| TcpListener::bind((ip, 0)).expect("bind");
        let (etcd, clients) = (listen(lan.etcd_ip()), listen(lan.client_ip()));
        let (etcd, clients) = (
            etcd.local_addr().expect("addr"),
            clients.local_addr().expect("addr"),
        );
        // Listeners inside nodes 0 and 2 (kept open while the thread's socket lives).
        let node0 = lan.node_ip(0);
        let n0 = lan
            .in_namespace(0, move || {
                TcpListener::bind((node0, 0)).expect("bind in node 0")
            })
            .expect("in node 0");
        let node2 = lan.node_ip(2);
        let n2 = lan
            .in_namespace(2, move || {
                TcpListener::bind((node2, 0)).expect("bind in node 2")
            })
            .expect("in node 2");
        let (n0a, n2a) = (n0.local_addr().expect("a"), n2.local_addr().expect("a"));
        assert!(reaches(&lan, 1, n0a));
        assert!(reaches(&lan, 0, etcd));
        assert!(connects(n0a), "the test namespace reaches node 0");
        lan.isolate(0).expect("isolate");
        assert!(
            !reaches(&lan, 1, n0a),
            "a peer still reaches the isolated node"
        );
        assert!(
            !reaches(&lan, 0, n2a),
            "the isolated node still reaches a peer"
        );
        assert!(
            !reaches(&lan, 0, etcd),
            "the isolated node still reaches etcd"
        );
        assert!(
            reaches(&lan, 0, clients),
            "the isolated node lost the clients"
        );
        assert!(connects(n0a), "the clients lost the isolated node");
        assert!(reaches(&lan, 1, n2a));
        assert!(reaches(&lan, 1, etcd));
        lan.heal(0).expect("heal");
        assert!(reaches(&lan, 1, n0a));
        assert!(reaches(&lan, 0, etcd));
        let (bridge, ns) = (lan.bridge(), lan.namespace(0));
        drop((n0, n2));
        drop(lan);
        let links = Command::new("ip").args(["link"]).output().expect("ip link");
        assert!(!String::from_utf8_lossy(&links.stdout).contains(&bridge));
        let spaces = Command::new("ip")
            .args(["netns"])
            .output()
            .expect("ip netns");
        assert!(!String::from_utf8_lossy(&spaces.stdout).contains(&ns));
    }
}
