// Staff UI behaviour that needs script; kept out of the pages so the CSP allows no inline script.
(function () {
  "use strict";
  // Quick replies and ready-made texts fill the message box; the staff member still presses Send.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("button.quick-reply");
    if (!button) return;
    var target = document.getElementById(button.dataset.target || "reply-text");
    if (!target) return;
    target.value = button.dataset.text || "";
    target.focus();
  });
})();
