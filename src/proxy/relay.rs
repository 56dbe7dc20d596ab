//! Relaying bytes both ways (CONNECT tunnels, upgraded connections) with two bounds a plain
//! `copy_bidirectional` lacks: it ends when the proxy stops (a drain must not wait on an open
//! WebSocket), and when nothing has moved either way for the idle timeout.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// How long a tunnel may carry nothing either way before it is closed.
pub const TUNNEL_IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// How a relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Both sides closed (or one failed).
    Closed { up: u64, down: u64 },
    /// Nothing moved for the idle timeout.
    Idle,
    /// The proxy is stopping.
    Shutdown,
}

/// Copies `client` <-> `upstream` until both directions close, `idle` passes without a byte
/// either way, or `stop` is cancelled. A side that closes its write half has that passed on
/// (half-close), and the other direction keeps flowing.
pub async fn both_ways<C, U>(
    client: C,
    upstream: U,
    idle: Duration,
    stop: &CancellationToken,
) -> Ended
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut upstream_read, mut upstream_write) = tokio::io::split(upstream);
    let mut up_buf = vec![0u8; 16 * 1024];
    let mut down_buf = vec![0u8; 16 * 1024];
    let (mut up, mut down) = (0u64, 0u64);
    let (mut up_done, mut down_done) = (false, false);
    while !(up_done && down_done) {
        tokio::select! {
            _ = stop.cancelled() => return Ended::Shutdown,
            _ = tokio::time::sleep(idle) => return Ended::Idle,
            read = client_read.read(&mut up_buf), if !up_done => match read {
                Ok(0) | Err(_) => {
                    up_done = true;
                    let _ = upstream_write.shutdown().await;
                }
                Ok(n) => {
                    if upstream_write.write_all(&up_buf[..n]).await.is_err() {
                        break;
                    }
                    up += n as u64;
                }
            },
            read = upstream_read.read(&mut down_buf), if !down_done => match read {
                Ok(0) | Err(_) => {
                    down_done = true;
                    let _ = client_write.shutdown().await;
                }
                Ok(n) => {
                    if client_write.write_all(&down_buf[..n]).await.is_err() {
                        break;
                    }
                    down += n as u64;
                }
            },
        }
    }
    Ended::Closed { up, down }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_relay_ends_when_the_proxy_stops() {
        let (client, _client_far) = tokio::io::duplex(64);
        let (upstream, _upstream_far) = tokio::io::duplex(64);
        let stop = CancellationToken::new();
        stop.cancel();
        let ended = both_ways(client, upstream, TUNNEL_IDLE_TIMEOUT, &stop).await;
        assert_eq!(ended, Ended::Shutdown);
    }

    #[tokio::test]
    async fn a_silent_relay_ends_after_the_idle_timeout() {
        let (client, _client_far) = tokio::io::duplex(64);
        let (upstream, _upstream_far) = tokio::io::duplex(64);
        // Nothing is ever sent, so only the idle bound can end it (whatever the clock does).
        let idle = Duration::from_millis(20);
        let ended = both_ways(client, upstream, idle, &CancellationToken::new()).await;
        assert_eq!(ended, Ended::Idle);
    }

    #[tokio::test]
    async fn bytes_flow_both_ways_and_half_closes_pass_on() {
        let (client, mut client_far) = tokio::io::duplex(64);
        let (upstream, mut upstream_far) = tokio::io::duplex(64);
        let stop = CancellationToken::new();
        let relay =
            tokio::spawn(
                async move { both_ways(client, upstream, TUNNEL_IDLE_TIMEOUT, &stop).await },
            );
        client_far.write_all(b"ping").await.expect("write");
        client_far.shutdown().await.expect("half-close");
        let mut got = Vec::new();
        upstream_far.read_to_end(&mut got).await.expect("read");
        assert_eq!(got, b"ping");
        upstream_far.write_all(b"pong").await.expect("write");
        upstream_far.shutdown().await.expect("close");
        let mut back = Vec::new();
        client_far.read_to_end(&mut back).await.expect("read");
        assert_eq!(back, b"pong");
        assert_eq!(relay.await.expect("join"), Ended::Closed { up: 4, down: 4 });
    }
}
