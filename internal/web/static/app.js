// The dashboard works without this file except for the Copy button; it also
// previews the schema name while typing (the Preview button does the same
// without JavaScript, and the server's answer is the one that counts), and
// keeps the numbers and charts current (without it, a reload does that), and
// shows only the chosen signature scheme's steps and fields in the add form.
(function () {
  "use strict";

  document.querySelectorAll("button[data-copy]").forEach(function (btn) {
    var field = document.getElementById(btn.dataset.copy);
    if (!field) { return; }
    btn.hidden = false;
    btn.addEventListener("click", function () {
      var done = function () {
        btn.textContent = "Copied";
        setTimeout(function () { btn.textContent = "Copy"; }, 2000);
      };
      var fallback = function () {
        field.focus();
        field.select();
        try { document.execCommand("copy"); done(); } catch (e) { /* the text stays selected */ }
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(field.value).then(done, fallback);
      } else {
        fallback();
      }
    });
  });

  // schemaName follows control.SchemaName (SPEC §2).
  function schemaName(name) {
    var s = "";
    var lower = name.toLowerCase();
    for (var i = 0; i < lower.length; i++) {
      var c = lower[i];
      if (c === " " || c === "-") { s += "_"; } else if (/[a-z0-9_]/.test(c)) { s += c; }
    }
    if (/^[0-9]/.test(s)) { s = "_" + s; }
    return s.slice(0, 63);
  }
  var name = document.getElementById("name");
  var preview = document.getElementById("schema-preview");
  if (name && preview) {
    name.addEventListener("input", function () {
      preview.textContent = schemaName(name.value.trim()) || "—";
    });
  }

  // The add form: show the parts of the chosen type ([data-types]) and
  // signature scheme ([data-schemes], a space-separated list; "" is none).
  // Without this the server shows the chosen scheme's parts, and Preview
  // re-renders them for a new choice.
  var form = document.getElementById("new-integration");
  if (form) {
    var checked = function (name) {
      var el = form.querySelector("input[name=" + name + "]:checked");
      return el ? el.value : "";
    };
    var sync = function () {
      var type = checked("type");
      var scheme = checked("scheme");
      form.querySelectorAll("[data-types]").forEach(function (el) {
        el.hidden = el.dataset.types.split(" ").indexOf(type) < 0;
      });
      form.querySelectorAll("[data-schemes]").forEach(function (el) {
        el.hidden = el.dataset.schemes.split(" ").indexOf(scheme) < 0;
      });
    };
    form.addEventListener("change", function (e) {
      if (e.target.name === "type" || e.target.name === "scheme") { sync(); }
    });
    sync();
  }

  // Live numbers: every few seconds, fetch the page's live parts as HTML
  // (the same URL with fragment=1, rendered by the server's templates) and
  // swap each [data-live] element for the one with the same id. Polling, not
  // server-sent events: see isFragment in internal/web/pages.go. Nothing is
  // fetched while the tab is hidden; it catches up as soon as it is visible.
  var every = 5000;
  var note = document.querySelector("[data-live-note]");
  if (document.querySelector("[data-live]")) {
    var timer = null;
    var busy = false;
    var schedule = function () {
      clearTimeout(timer);
      timer = null;
      if (document.visibilityState !== "hidden") {
        timer = setTimeout(poll, every);
      }
    };
    var say = function (text) { if (note) { note.textContent = text; } };
    // UTC, like every time the server shows.
    var clock = function () { return new Date().toISOString().slice(11, 19) + " UTC"; };
    var poll = function () {
      if (busy || document.visibilityState === "hidden") { return; }
      busy = true;
      var url = new URL(window.location.href);
      url.searchParams.set("fragment", "1");
      fetch(url, { credentials: "same-origin", cache: "no-store", headers: { "Accept": "text/html" } })
        .then(function (resp) {
          if (resp.redirected) {
            // The session ended (logged out, expired): show the login page.
            window.location.reload();
            throw new Error("session ended");
          }
          if (!resp.ok) { throw new Error("HTTP " + resp.status); }
          return resp.text();
        })
        .then(function (html) {
          var doc = new DOMParser().parseFromString(html, "text/html");
          document.querySelectorAll("[data-live]").forEach(function (el) {
            var fresh = doc.getElementById(el.id);
            if (fresh) { el.replaceWith(document.importNode(fresh, true)); }
          });
          say("Live: updated every " + every / 1000 + " s while this tab is visible; last update " + clock() + ".");
        })
        .catch(function () {
          say("Live updates failed at " + clock() + "; retrying every " + every / 1000 + " s. Reload the page if this persists.");
        })
        .then(function () {
          busy = false;
          schedule();
        });
    };
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "hidden") {
        clearTimeout(timer);
        timer = null;
      } else {
        poll(); // catch up at once, then every few seconds
      }
    });
    say("Live: updated every " + every / 1000 + " s while this tab is visible.");
    schedule();
  }
})();
