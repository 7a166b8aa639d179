// Vigil review app: keyboard shortcuts, deliberate reveals that blur again, confirmations.
// No framework and no inline script, so the page's Content-Security-Policy can forbid both.
(function () {
  "use strict";
  var csrf = document.body.getAttribute("data-csrf") || "";

  // Buttons and links that carry data-key="x" answer to that key.
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    var target = event.target;
    if (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.tagName === "SELECT")) return;
    var control = document.querySelector('[data-key="' + event.key.toLowerCase() + '"]');
    if (!control) return;
    event.preventDefault();
    control.click();
  });

  // Anything destructive asks first.
  document.addEventListener("click", function (event) {
    var control = event.target.closest ? event.target.closest("[data-confirm]") : null;
    if (control && !window.confirm(control.getAttribute("data-confirm"))) event.preventDefault();
  });

  // Revealing: the clear picture is fetched (and counted) only on request, shown for a few
  // seconds, then replaced by the blurred one and dropped from memory.
  var image = document.getElementById("preview");
  var button = document.getElementById("reveal");
  if (!image || !button) return;
  var timer = null;
  var clearUrl = null;

  function blur() {
    if (timer) { clearTimeout(timer); timer = null; }
    image.src = image.getAttribute("data-blurred");
    image.classList.remove("revealed");
    image.alt = "Blurred, greyscale preview";
    if (clearUrl) { URL.revokeObjectURL(clearUrl); clearUrl = null; }
    button.disabled = false;
  }

  button.addEventListener("click", function () {
    if (clearUrl) { blur(); return; }
    button.disabled = true;
    fetch(image.getAttribute("data-reveal"), {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRF-Token": csrf, "X-Requested-With": "fetch" }
    }).then(function (response) {
      if (!response.ok) return response.text().then(function (text) { throw new Error(text); });
      return response.blob();
    }).then(function (blob) {
      clearUrl = URL.createObjectURL(blob);
      image.src = clearUrl;
      image.classList.add("revealed");
      image.alt = "Revealed image";
      button.disabled = false;
      var counter = document.getElementById("revealed-count");
      if (counter) counter.textContent = String(Number(counter.textContent) + 1);
      var seconds = Number(image.getAttribute("data-seconds")) || 5;
      timer = setTimeout(blur, seconds * 1000);
    }).catch(function (error) {
      button.disabled = false;
      window.alert("Could not reveal: " + error.message);
    });
  });
})();
