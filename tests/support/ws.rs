//! A WebSocket client through gatehouse (plain listener), and one echo round trip.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    client_async,
    tungstenite::{client::IntoClientRequest, Message},
    MaybeTlsStream, WebSocketStream,
};

use super::Gatehouse;

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens `ws://app.test{path}` through `gh`'s public listener.
pub async fn connect(
    gh: &Gatehouse,
    path: &str,
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let req = gh
        .host_url("ws", "app.test", path)
        .into_client_request()
        .unwrap();
    let tcp = TcpStream::connect(gh.addr).await.unwrap();
    client_async(req, MaybeTlsStream::Plain(tcp))
        .await
        .map(|(ws, _)| ws)
}

/// Sends `msg` and returns what came back within 5 s (an error text otherwise).
pub async fn try_echo(ws: &mut Ws, msg: Message) -> Result<(), String> {
    ws.send(msg.clone()).await.map_err(|e| e.to_string())?;
    let got = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .map_err(|_| "no echo within 5 s".to_owned())?
        .ok_or("stream closed")?
        .map_err(|e| e.to_string())?;
    if got == msg {
        Ok(())
    } else {
        Err(format!("echo {got:?} != {msg:?}"))
    }
}

/// Sends `msg` and asserts the same message comes back within 5 s.
pub async fn echo_once(ws: &mut Ws, msg: Message) {
    if let Err(e) = try_echo(ws, msg).await {
        panic!("echo: {e}");
    }
}
