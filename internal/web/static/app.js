// The dashboard works without this file except for the Copy button; it also
// previews the schema name while typing (the Preview button does the same
// without JavaScript, and the server's answer is the one that counts).
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
})();
