"""Local push services that do the real work: VAPID and aes128gcm (Web Push), OAuth and
FCM's error bodies (FCM), provider tokens over HTTP/2 and TLS (APNs)."""
