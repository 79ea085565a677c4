// Progressive enhancement of the Postwire console; every page works without it.
// - Placeholder buttons insert their placeholder into the body at the cursor.
// - The settings preview refreshes as the form changes.
"use strict";

document.addEventListener("DOMContentLoaded", function () {
  var body = document.getElementById("body_template");
  var form = document.getElementById("settings");
  var preview = document.getElementById("preview");

  document.querySelectorAll("button.placeholder").forEach(function (button) {
    button.addEventListener("click", function () {
      if (!body) return;
      var text = button.getAttribute("data-insert");
      var start = body.selectionStart, end = body.selectionEnd;
      body.value = body.value.slice(0, start) + text + body.value.slice(end);
      body.focus();
      body.selectionStart = body.selectionEnd = start + text.length;
      refresh();
    });
  });

  var timer = null;
  function refresh() {
    if (!form || !preview) return;
    clearTimeout(timer);
    timer = setTimeout(function () {
      var data = new URLSearchParams(new FormData(form));
      fetch("/console/settings/preview", {
        method: "POST",
        body: data,
        credentials: "same-origin",
        headers: { "Content-Type": "application/x-www-form-urlencoded" }
      }).then(function (response) {
        return response.ok ? response.text() : null;
      }).then(function (html) {
        if (html !== null) preview.innerHTML = html;
      }).catch(function () { /* the Preview button still works */ });
    }, 300);
  }
  if (form) {
    form.addEventListener("input", refresh);
    form.addEventListener("change", refresh);
  }
});
