// Tessera console: the only script besides htmx. It sends the session's CSRF token with every htmx request
// (forms carry it as a hidden field too) and nothing else; pages work as plain forms without it.
document.addEventListener("htmx:configRequest", function (event) {
  var meta = document.querySelector('meta[name="csrf-token"]');
  if (meta) { event.detail.headers["X-CSRF-Token"] = meta.content; }
});
