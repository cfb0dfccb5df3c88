//! Opening one websocket to the data channel: the presigned URL or a SigV4-signed upgrade,
//! then the keepalive ping and the open frame.

use super::*;

/// URL without its query, for messages (the query carries opaque routing data).
pub(super) fn display_url(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

/// Opens one websocket and sends the keepalive ping and the open frame.
pub(super) async fn dial(
    target: &SessionTarget,
    token: &str,
    client_id: &str,
    options: &ClientOptions,
) -> Result<Ws, ChannelError> {
    let url = &target.stream_url;
    let bad_url = |reason: String| ChannelError::BadUrl {
        url: display_url(url).to_string(),
        reason,
    };
    if !(url.starts_with("ws://") || url.starts_with("wss://")) {
        return Err(bad_url("it must start with ws:// or wss://".into()));
    }
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| bad_url(e.to_string()))?;
    match &options.signing {
        // A presigned URL authenticates itself; a second signature would conflict with it.
        Some(_) if is_presigned(url) => debug!("presigned StreamUrl: upgrade not signed"),
        Some(signing) => sign_upgrade(&mut request, url, signing).await?,
        None => {}
    }
    let dial_err = |reason: String| ChannelError::Dial {
        url: display_url(url).to_string(),
        reason,
    };
    let (mut ws, _) = tokio::time::timeout(
        limits::DIAL_TIMEOUT,
        // Interactive traffic: no Nagle delay on keystrokes and acks.
        tokio_tungstenite::connect_async_with_config(request, None, true),
    )
    .await
    .map_err(|_| dial_err(format!("no answer within {:?}", limits::DIAL_TIMEOUT)))?
    .map_err(|e| dial_err(e.to_string()))?;
    let open = OpenDataChannelInput {
        message_schema_version: "1.0".into(),
        request_id: new_id(),
        token_value: token.to_string(),
        client_id: client_id.to_string(),
        client_version: Some(options.client_version.clone()),
    };
    let open = serde_json::to_string(&open).map_err(|e| dial_err(e.to_string()))?;
    // The open frame goes first: some servers (our lab among them) expect it before anything.
    ws.send(Message::text(open))
        .await
        .map_err(|e| dial_err(e.to_string()))?;
    ws.send(Message::Ping(limits::PING_PAYLOAD.into()))
        .await
        .map_err(|e| dial_err(e.to_string()))?;
    debug!(url = display_url(url), "data channel open");
    Ok(ws)
}

/// Whether the URL already carries a SigV4 query signature.
pub(super) fn is_presigned(url: &str) -> bool {
    url.split_once('?').is_some_and(|(_, query)| {
        query
            .split('&')
            .any(|kv| kv.to_ascii_lowercase().starts_with("x-amz-signature="))
    })
}

/// SigV4-signs the upgrade: service `ssmmessages`, only Host (plus the date and any session
/// token) signed, empty-body payload hash. Signed afresh on every dial.
pub(super) async fn sign_upgrade(
    request: &mut Request,
    url: &str,
    signing: &Signing,
) -> Result<(), ChannelError> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use aws_sigv4::sign::v4;

    let credentials = signing
        .credentials
        .provide_credentials()
        .await
        .map_err(|e| ChannelError::Sign(e.to_string()))?;
    let host = request
        .headers()
        .get("host")
        .and_then(|h| h.to_str().ok())
        .ok_or_else(|| ChannelError::Sign("the request has no Host header".into()))?
        .to_string();
    let identity = credentials.into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&signing.region)
        .name("ssmmessages")
        .time(std::time::SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| ChannelError::Sign(e.to_string()))?
        .into();
    let signable = SignableRequest::new(
        "GET",
        url,
        std::iter::once(("host", host.as_str())),
        SignableBody::Bytes(&[]),
    )
    .map_err(|e| ChannelError::Sign(e.to_string()))?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| ChannelError::Sign(e.to_string()))?
        .into_parts();
    let (headers, _) = instructions.into_parts();
    for header in headers {
        let value =
            HeaderValue::from_str(header.value()).map_err(|e| ChannelError::Sign(e.to_string()))?;
        request.headers_mut().insert(header.name(), value);
    }
    Ok(())
}
