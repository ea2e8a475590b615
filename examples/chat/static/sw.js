// The chat demo's service worker: shows a push notification and opens its room on click.
//
// The server sends the JSON of a Notification: {title, body, url, tag, icon, data}; data
// carries {room, seq, event}. A notification with a tag replaces the previous one with
// the same tag (one per conversation).

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("push", (event) => {
  let payload = {};
  try {
    payload = event.data ? event.data.json() : {};
  } catch {
    payload = { body: event.data ? event.data.text() : "" };
  }
  const data = payload.data || {};
  const url = payload.url || (data.room ? `/?room=${encodeURIComponent(data.room)}` : "/");
  const options = { body: payload.body || "", data: { ...data, url } };
  if (payload.tag) {
    options.tag = payload.tag;
    options.renotify = true; // a newer message of the same conversation alerts again
  }
  if (payload.icon) options.icon = payload.icon;
  event.waitUntil(self.registration.showNotification(payload.title || "Dialogue chat", options));
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const { url = "/", room } = event.notification.data || {};
  const target = new URL(url, self.location.origin);
  event.waitUntil((async () => {
    const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
    const open = windows.find((win) => new URL(win.url).origin === target.origin);
    if (open) { // a tab of the chat is open: bring it forward and show the room there
      await open.focus();
      if (room) open.postMessage({ type: "open-room", room });
      return;
    }
    await self.clients.openWindow(target.href);
  })());
});
