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

  // Calendar upload: the file goes up through XMLHttpRequest so the page can say how much of it
  // has been sent (10 MiB over a clinic's line takes a while), then that the server is reading
  // it. Each step is also a "upload-progress" event on the form (detail: percent sent).
  function showUpload(form, status, percent, text) {
    var bar = status.querySelector("progress");
    var label = status.querySelector("[data-label]");
    if (percent === null) bar.removeAttribute("value"); // indeterminate: the server is reading
    else { bar.max = 100; bar.value = percent; }
    label.textContent = text;
    form.dispatchEvent(new CustomEvent("upload-progress", { detail: percent }));
  }

  // A form whose work takes a while (applying an import) shows its "working" line on submit.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.matches || !form.matches("form[data-busy]")) return;
    var busy = document.getElementById(form.dataset.busy);
    if (busy) busy.hidden = false;
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.matches || !form.matches("form[data-upload-progress]")) return;
    var status = document.getElementById(form.dataset.uploadProgress);
    if (!status || !window.FormData || !window.XMLHttpRequest) return; // a plain submit
    event.preventDefault();
    status.hidden = false;
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.upload.addEventListener("progress", function (e) {
      if (!e.lengthComputable || !e.total) return;
      var percent = Math.floor((100 * e.loaded) / e.total);
      showUpload(form, status, percent, "Uploading the file… " + percent + "%");
    });
    xhr.upload.addEventListener("load", function () {
      showUpload(form, status, 100, "Uploaded (100%).");
      showUpload(form, status, null, "Uploaded; reading the file…");
    });
    xhr.addEventListener("load", function () {
      if (xhr.status < 400 && xhr.responseURL) {
        window.location.assign(xhr.responseURL); // the preview page the upload redirected to
        return;
      }
      // A refusal (422), a missing file (400) or a busy database (503) comes back as the
      // calendar page with its message: show that page as a normal submit would have.
      var page = new DOMParser().parseFromString(xhr.responseText, "text/html");
      document.title = page.title;
      document.body.replaceWith(page.body);
    });
    xhr.addEventListener("error", function () {
      showUpload(form, status, 0, "The upload failed: the connection was lost. Please try again.");
    });
    xhr.send(new FormData(form));
  });
})();
