//! A minimal blocking Redis client (RESP2 over a fresh loopback TCP connection per command),
//! for probes that must be fast and bounded in time: a paused Redis blocks writes, so every
//! call has a timeout and a timed-out call is simply "no answer".

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, bail};

/// One RESP2 reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Simple(String),
    /// `-READONLY ...`
    Error(String),
    /// `:42`
    Int(i64),
    /// `$n` (None for `$-1`)
    Bulk(Option<String>),
    /// `*n` (None for `*-1`)
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The bulk or simple string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Reply::Simple(s) | Reply::Bulk(Some(s)) => Some(s),
            _ => None,
        }
    }
}

/// Sends `args` as one command to 127.0.0.1:`port` and reads the reply, all within `timeout`
/// (connect, write and read each bounded by it). An error reply is `Ok(Reply::Error)`.
pub fn command(port: u16, args: &[&str], timeout: Duration) -> anyhow::Result<Reply> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connect to redis on port {port}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    stream.write_all(req.as_bytes())?;
    let mut reader = BufReader::new(stream);
    read_reply(&mut reader).with_context(|| format!("redis on port {port}: {}", args.join(" ")))
}

fn read_line(r: &mut impl BufRead) -> anyhow::Result<String> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        bail!("connection closed");
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

fn read_reply(r: &mut impl BufRead) -> anyhow::Result<Reply> {
    let line = read_line(r)?;
    let (kind, rest) = line.split_at(line.len().min(1));
    Ok(match kind {
        "+" => Reply::Simple(rest.to_owned()),
        "-" => Reply::Error(rest.to_owned()),
        ":" => Reply::Int(rest.parse().context("integer reply")?),
        "$" => {
            let n: i64 = rest.parse().context("bulk length")?;
            if n < 0 {
                Reply::Bulk(None)
            } else {
                let mut buf = vec![0u8; usize::try_from(n)? + 2];
                std::io::Read::read_exact(r, &mut buf)?;
                buf.truncate(buf.len() - 2);
                Reply::Bulk(Some(String::from_utf8_lossy(&buf).into_owned()))
            }
        }
        "*" => {
            let n: i64 = rest.parse().context("array length")?;
            if n < 0 {
                Reply::Array(None)
            } else {
                let items = (0..n)
                    .map(|_| read_reply(r))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                Reply::Array(Some(items))
            }
        }
        _ => bail!("unexpected reply line {line:?}"),
    })
}

/// One field of `INFO <section>` (e.g. `role`, `master_repl_offset`), if Redis answers.
pub fn info_field(port: u16, section: &str, field: &str, timeout: Duration) -> Option<String> {
    let reply = command(port, &["INFO", section], timeout).ok()?;
    let text = reply.as_str()?.to_owned();
    text.lines().find_map(|l| {
        l.trim_end()
            .strip_prefix(field)
            .and_then(|v| v.strip_prefix(':'))
            .map(str::to_owned)
    })
}
