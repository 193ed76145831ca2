//! SSE `event: execution`: the `ExecutionView` after each committed journal write, so the
//! console's execution page follows a run live without polling.

use std::convert::Infallible;

use axum::response::sse::Event;
use futures::{Stream, StreamExt};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use crate::types::ExecutionView;

pub fn stream(
    rx: broadcast::Receiver<ExecutionView>,
) -> impl Stream<Item = Result<Event, Infallible>> + Send {
    BroadcastStream::new(rx).map(|item| {
        Ok(match item {
            Ok(view) => Event::default()
                .event("execution")
                .json_data(&view)
                .unwrap_or_else(|_| Event::default().comment("unserializable execution")),
            Err(BroadcastStreamRecvError::Lagged(n)) => Event::default().event("lagged").data(
                format!("{n} execution updates were dropped; reload /api/v1/executions"),
            ),
        })
    })
}
