//! Response bodies as they stream back: frame by frame, optionally through a `ResponseFilter`.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};

use super::gate::ResponseFilter;
use super::BoxError;
use crate::admin::metrics::metrics;

/// What the proxy sends back to its clients.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// An upstream body relayed as it arrives: each frame is passed on the moment it is read
/// (nothing is buffered beyond what the filter holds back), and a broken upstream stream is
/// counted before it reaches the client as a reset.
pub fn relay<B>(upstream: B, filter: Option<Box<dyn ResponseFilter>>) -> ProxyBody
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    Filtered {
        inner: upstream,
        filter,
        state: State::Streaming,
    }
    .boxed_unsync()
}

struct Filtered<B> {
    inner: B,
    filter: Option<Box<dyn ResponseFilter>>,
    state: State,
}

enum State {
    Streaming,
    Trailers(HeaderMap),
    Done,
}

impl<B> Body for Filtered<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            match std::mem::replace(&mut this.state, State::Streaming) {
                State::Done => {
                    this.state = State::Done;
                    return Poll::Ready(None);
                }
                State::Trailers(trailers) => {
                    this.state = State::Done;
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                }
                State::Streaming => {}
            }
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(chunk) => {
                        let out = match this.filter.as_mut() {
                            Some(filter) => filter.data(chunk),
                            None => chunk,
                        };
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            this.state = State::Trailers(trailers);
                            if let Some(rest) = this.finish() {
                                return Poll::Ready(Some(Ok(Frame::data(rest))));
                            }
                        }
                    }
                },
                Some(Err(error)) => {
                    let error: BoxError = error.into();
                    metrics().upstream_errors_total.inc();
                    tracing::warn!(%error, "upstream response stream broke off");
                    this.state = State::Done;
                    return Poll::Ready(Some(Err(error)));
                }
                None => {
                    this.state = State::Done;
                    return Poll::Ready(this.finish().map(|rest| Ok(Frame::data(rest))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done)
    }

    fn size_hint(&self) -> SizeHint {
        // A filter may change the length; without one the upstream's hint is exact.
        if self.filter.is_some() {
            SizeHint::default()
        } else {
            self.inner.size_hint()
        }
    }
}

impl<B> Filtered<B> {
    /// The filter's held-back bytes, once, when the upstream body ends.
    fn finish(&mut self) -> Option<Bytes> {
        let rest = self.filter.take()?.finish();
        (!rest.is_empty()).then_some(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::StreamBody;

    /// Upper-cases what passes and holds back the last byte of each chunk until the next one,
    /// as a pseudonym-restoring filter holds back a possible partial token.
    struct HoldLastByte {
        held: Vec<u8>,
    }

    impl ResponseFilter for HoldLastByte {
        fn head(&mut self, _parts: &mut http::response::Parts) {}
        fn data(&mut self, chunk: Bytes) -> Bytes {
            let mut all = std::mem::take(&mut self.held);
            all.extend_from_slice(&chunk.to_ascii_uppercase());
            if let Some(last) = all.pop() {
                self.held.push(last);
            }
            Bytes::from(all)
        }
        fn finish(&mut self) -> Bytes {
            Bytes::from(std::mem::take(&mut self.held))
        }
    }

    fn frames(
        parts: Vec<Frame<Bytes>>,
    ) -> impl Body<Data = Bytes, Error = std::convert::Infallible> + Unpin {
        StreamBody::new(futures_util::stream::iter(
            parts.into_iter().map(Ok::<_, std::convert::Infallible>),
        ))
    }

    async fn collect_frames(mut body: ProxyBody) -> Vec<Frame<Bytes>> {
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            out.push(frame.expect("frame"));
        }
        out
    }

    #[tokio::test]
    async fn a_filter_sees_each_chunk_and_its_held_bytes_come_before_the_trailers() {
        let mut trailers = HeaderMap::new();
        trailers.insert("x-checksum", http::HeaderValue::from_static("1"));
        let upstream = frames(vec![
            Frame::data(Bytes::from_static(b"data: he")),
            Frame::data(Bytes::from_static(b"llo\n\n")),
            Frame::trailers(trailers),
        ]);
        let out = collect_frames(relay(
            upstream,
            Some(Box::new(HoldLastByte { held: vec![] })),
        ))
        .await;
        let data: Vec<Bytes> = out.iter().filter_map(|f| f.data_ref().cloned()).collect();
        assert_eq!(
            data,
            vec![
                Bytes::from_static(b"DATA: H"),
                Bytes::from_static(b"ELLO\n"),
                Bytes::from_static(b"\n"),
            ]
        );
        assert!(
            out.last().expect("frames").is_trailers(),
            "trailers stay last"
        );
    }

    #[tokio::test]
    async fn without_a_filter_frames_pass_one_for_one() {
        let upstream = frames(vec![
            Frame::data(Bytes::from_static(b"event: a\n\n")),
            Frame::data(Bytes::from_static(b"event: b\n\n")),
        ]);
        let out = collect_frames(relay(upstream, None)).await;
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[1].data_ref().expect("data"),
            &Bytes::from_static(b"event: b\n\n")
        );
    }
}
