//! Each call's log lines carry its call id and instance (a `call` span around its driver), so
//! an operator can follow one call through a busy log.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use appmedia_bot::Bot;
use appmedia_model::CallState;
use appmedia_signalling::builders::Media;
use common::*;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calls_log_lines_name_the_call_and_the_instance() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter("appmedia_bot=info")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();
    let emulator = emulator(echo_directory()).await;
    let bot = Bot::start(bot_config(&emulator).with_instance_id("bot-9"))
        .await
        .expect("bot starts");
    let request = call_to(JOHN, &bot, Media::service_hosted());
    let mut call = bot.call(request, Default::default()).await.unwrap();
    assert!(call.wait_for_state(CallState::Established, WAIT).await);
    let id = call.id().to_owned();
    call.hang_up().await.unwrap();
    bot.shutdown(None).await;
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let tagged = format!("call{{id={id} instance=bot-9}}");
    assert!(
        text.lines()
            .any(|l| l.contains(&tagged) && l.contains("call ended")),
        "no line with {tagged} and the end:\n{text}"
    );
}
