//! Response bodies as they stream back: frame by frame, optionally through a `ResponseFilter`.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;

use super::gate::ResponseFilter;
use super::BoxError;
use crate::admin::metrics::metrics;

/// What the proxy sends back to its clients.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

pub fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// An upstream body relayed as it arrives: each frame is passed on the moment it is read
/// (nothing is buffered beyond what the filter holds back), and a broken upstream stream is
/// counted before it reaches the client as a reset.
pub fn relay(upstream: Incoming, filter: Option<Box<dyn ResponseFilter>>) -> ProxyBody {
    Filtered {
        inner: upstream,
        filter,
        state: State::Streaming,
    }
    .boxed_unsync()
}

struct Filtered {
    inner: Incoming,
    filter: Option<Box<dyn ResponseFilter>>,
    state: State,
}

enum State {
    Streaming,
    Trailers(HeaderMap),
    Done,
}

impl Body for Filtered {
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
                    metrics().upstream_errors_total.inc();
                    tracing::warn!(%error, "upstream response stream broke off");
                    this.state = State::Done;
                    return Poll::Ready(Some(Err(error.into())));
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

impl Filtered {
    /// The filter's held-back bytes, once, when the upstream body ends.
    fn finish(&mut self) -> Option<Bytes> {
        let rest = self.filter.take()?.finish();
        (!rest.is_empty()).then_some(rest)
    }
}
