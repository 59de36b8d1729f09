//! The requests a client makes of a session (connect, publish, play, closing a stream) and the
//! caller's answers to them: the half of the session the application drives.

use super::*;

impl ServerSession {
    pub(super) fn connect(&mut self, cmd: Command) -> Result<(), SessionError> {
        let get = |k: &str| {
            cmd.object
                .get(k)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string()
        };
        let app_full = get("app");
        let tc_url = get("tcUrl");
        let (app, app_query) = split_query(&app_full);
        let tc_query = tc_url.split_once('?').map(|(_, q)| q).unwrap_or("");
        let explicit = query_param(app_query, "vhost").or_else(|| query_param(tc_query, "vhost"));
        let vhost_explicit = explicit.is_some();
        let vhost = explicit
            .map(str::to_string)
            .unwrap_or_else(|| url_host(&tc_url).to_string());
        let object_encoding = cmd
            .object
            .get("objectEncoding")
            .and_then(|v| v.as_f64())
            .unwrap_or(0.0);
        self.app = app.to_string();
        self.pending_connect = Some((cmd.transaction_id, object_encoding));
        self.awaiting = true;
        self.events.push_back(SessionEvent::ConnectRequested {
            app: app.to_string(),
            tc_url,
            vhost,
            vhost_explicit,
        });
        Ok(())
    }

    /// Answer the pending `connect` with success (window, bandwidth, chunk size, `_result`).
    pub fn accept_connect(&mut self) {
        let Some((txn, object_encoding)) = self.pending_connect.take() else {
            return;
        };
        self.connected = true;
        self.awaiting = false;
        self.writer
            .window_ack_size(&mut self.out, self.cfg.window_ack_size);
        self.writer
            .set_peer_bandwidth(&mut self.out, self.cfg.window_ack_size, 2);
        // Our own chunk size: announced with the old size, applied to all that follows.
        self.writer
            .set_chunk_size(&mut self.out, self.cfg.out_chunk_size);
        self.result(
            txn,
            Amf0Value::object([
                ("fmsVer", Amf0Value::string("FMS/3,5,7,7009")),
                ("capabilities", Amf0Value::Number(31.0)),
                ("mode", Amf0Value::Number(1.0)),
            ]),
            vec![Amf0Value::object([
                ("level", Amf0Value::string("status")),
                ("code", Amf0Value::string("NetConnection.Connect.Success")),
                ("description", Amf0Value::string("Connection succeeded.")),
                ("objectEncoding", Amf0Value::Number(object_encoding)),
            ])],
        );
    }

    /// Refuse the pending `connect` (`NetConnection.Connect.Rejected`); the caller closes.
    pub fn reject_connect(&mut self, description: &str) {
        if let Some((txn, _)) = self.pending_connect.take() {
            self.error_reply(txn, "NetConnection.Connect.Rejected", description);
        }
    }

    pub(super) fn named_stream(
        &self,
        stream_id: u32,
        cmd: &Command,
    ) -> Result<(String, String), SessionError> {
        let state = self
            .state_of(stream_id)
            .ok_or(SessionError::UnknownStream {
                stream_id,
                what: "command",
            })?;
        if state != StreamState::Idle {
            return Err(SessionError::WrongState {
                command: cmd.name.clone(),
                stream_id,
                state: state.describe(),
            });
        }
        let full = cmd
            .args
            .first()
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| SessionError::MissingStreamName {
                command: cmd.name.clone(),
            })?;
        let (name, query) = split_query(full);
        Ok((name.to_string(), query.to_string()))
    }

    pub(super) fn publish(&mut self, stream_id: u32, cmd: &Command) -> Result<(), SessionError> {
        let (name, query) = self.named_stream(stream_id, cmd)?;
        let publish_type = cmd
            .args
            .get(1)
            .and_then(|v| v.as_str())
            .unwrap_or("live")
            .to_string();
        self.set_state(stream_id, StreamState::PublishPending);
        self.awaiting = true;
        self.events.push_back(SessionEvent::PublishRequested {
            stream_id,
            name,
            query,
            publish_type,
        });
        Ok(())
    }

    pub(super) fn play(&mut self, stream_id: u32, cmd: &Command) -> Result<(), SessionError> {
        let (name, query) = self.named_stream(stream_id, cmd)?;
        let num = |i: usize, d: f64| cmd.args.get(i).and_then(|v| v.as_f64()).unwrap_or(d);
        let reset = cmd.args.get(3).and_then(|v| v.as_bool()).unwrap_or(true);
        self.set_state(stream_id, StreamState::PlayPending);
        self.awaiting = true;
        self.events.push_back(SessionEvent::PlayRequested {
            stream_id,
            name,
            query,
            start: num(1, -2.0),
            duration: num(2, -1.0),
            reset,
        });
        Ok(())
    }

    pub(super) fn stop_stream(&mut self, stream_id: u32) {
        match self.state_of(stream_id) {
            Some(StreamState::Publishing) | Some(StreamState::PublishPending) => {
                self.set_state(stream_id, StreamState::Idle);
                self.reply(
                    stream_id,
                    on_status(
                        "status",
                        "NetStream.Unpublish.Success",
                        "Stream unpublished",
                    ),
                );
                self.events
                    .push_back(SessionEvent::PublishStopped { stream_id });
            }
            Some(StreamState::Playing) | Some(StreamState::PlayPending) => {
                self.set_state(stream_id, StreamState::Idle);
                self.events
                    .push_back(SessionEvent::PlayStopped { stream_id });
            }
            _ => {}
        }
    }

    /// The caller approved the publish: the client may now send media.
    pub fn accept_publish(&mut self, stream_id: u32) {
        self.awaiting = false;
        if self.state_of(stream_id) != Some(StreamState::PublishPending) {
            return;
        }
        self.set_state(stream_id, StreamState::Publishing);
        self.writer
            .user_control(&mut self.out, &UserControl::StreamBegin(stream_id));
        self.reply(
            stream_id,
            on_status("status", "NetStream.Publish.Start", "Start publishing"),
        );
    }

    /// Refuse a publish with an `onStatus` error such as `NetStream.Publish.BadName`.
    pub fn reject_publish(&mut self, stream_id: u32, code: &str, description: &str) {
        self.awaiting = false;
        let description = clip(description, 512);
        if self.state_of(stream_id) == Some(StreamState::PublishPending) {
            self.set_state(stream_id, StreamState::Idle);
        }
        self.reply(stream_id, on_status("error", code, description));
    }

    /// The caller approved the play: media for this stream may follow.
    pub fn accept_play(&mut self, stream_id: u32, reset: bool, name: &str) {
        self.awaiting = false;
        if self.state_of(stream_id) != Some(StreamState::PlayPending) {
            return;
        }
        self.set_state(stream_id, StreamState::Playing);
        self.writer
            .user_control(&mut self.out, &UserControl::StreamBegin(stream_id));
        let name = clip(name, 256);
        if reset {
            let d = format!("Playing and resetting {name}.");
            self.reply(stream_id, on_status("status", "NetStream.Play.Reset", &d));
        }
        let d = format!("Started playing {name}.");
        self.reply(stream_id, on_status("status", "NetStream.Play.Start", &d));
        self.writer.data(
            &mut self.out,
            stream_id,
            &[
                Amf0Value::string("|RtmpSampleAccess"),
                Amf0Value::Boolean(true),
                Amf0Value::Boolean(true),
            ],
        );
    }

    /// Refuse a play with an `onStatus` error such as `NetStream.Play.Failed`.
    pub fn reject_play(&mut self, stream_id: u32, code: &str, description: &str) {
        self.awaiting = false;
        let description = clip(description, 512);
        if self.state_of(stream_id) == Some(StreamState::PlayPending) {
            self.set_state(stream_id, StreamState::Idle);
        }
        self.reply(stream_id, on_status("error", code, description));
    }

    /// Tell a player its publisher left (it stays subscribed and waits for the next publish).
    pub fn unpublish_notify(&mut self, stream_id: u32, name: &str) {
        let b = message::play_notify(self.cfg.out_chunk_size, stream_id, false, name);
        self.out.extend_from_slice(&b);
    }

    /// Ids of streams playing or waiting for play approval (for cleanup on close).
    pub fn playing_streams(&self) -> impl Iterator<Item = u32> + '_ {
        self.streams
            .iter()
            .filter(|(_, s)| *s == StreamState::Playing || *s == StreamState::PlayPending)
            .map(|(id, _)| *id)
    }

    /// Ids of streams being published or waiting for approval.
    pub fn publishing_streams(&self) -> impl Iterator<Item = u32> + '_ {
        self.streams
            .iter()
            .filter(|(_, s)| *s == StreamState::Publishing || *s == StreamState::PublishPending)
            .map(|(id, _)| *id)
    }
}
