/*
 * Offline stand-in for https://assets.crowd.aws/crowd-html-elements.js, served by the browser test through
 * Playwright's page.route so the page never reaches the internet. It implements only what the review template
 * relies on, following the documented behaviour of the real elements:
 *
 *  - <crowd-form> wraps the task, appends a submit <crowd-button> when none is present, fires the standard
 *    (cancelable) "submit" event, so an onsubmit handler can call preventDefault() to block submission, and
 *    submits its named fields as an array with one object, [{"<name>": <value>}] (the element reference's
 *    "Output" sections). Plain <input>/<textarea>/<select> fields contribute their string value; crowd elements
 *    contribute their .value. Checkbox and radio inputs are not emulated (the review template has none inside the
 *    form). Ground Truth stores that one object, JSON-encoded, as annotationData.content.
 *  - <crowd-button form-action="submit"> submits the enclosing crowd-form when clicked.
 *
 * The submitted array is left in window.__crowdSubmissions for the test to read.
 */
(function () {
  "use strict";
  window.__crowdSubmissions = [];

  function collect(form) {
    var out = {};
    var fields = form.querySelectorAll("[name]");
    for (var i = 0; i < fields.length; i++) {
      var node = fields[i], name = node.getAttribute("name");
      var tag = node.tagName.toLowerCase();
      if (tag === "input") {
        var type = (node.getAttribute("type") || "text").toLowerCase();
        if (type === "checkbox" || type === "radio") { throw new Error("stub: checkbox/radio serialisation is not emulated"); }
        out[name] = node.value;
      } else if (tag === "textarea" || tag === "select") {
        out[name] = node.value;
      } else if (tag.indexOf("crowd-") === 0 && "value" in node) {
        out[name] = node.value;
      }
    }
    return [out];
  }

  class CrowdForm extends HTMLElement {
    connectedCallback() {
      // Upgraded while the parser is still inside the element: look for a submit button once the children exist.
      var self = this;
      var addButton = function () {
        if (!self.querySelector('crowd-button[form-action="submit"]')) {
          var button = document.createElement("crowd-button");
          button.setAttribute("form-action", "submit");
          button.textContent = "Submit";
          self.appendChild(button);
        }
      };
      if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", addButton); } else { addButton(); }
    }
    submit() {
      var event = new Event("submit", { cancelable: true });
      this.dispatchEvent(event);
      if (event.defaultPrevented) { return false; }
      window.__crowdSubmissions.push(collect(this));
      return true;
    }
  }

  class CrowdButton extends HTMLElement {
    connectedCallback() {
      if (this.shadowRoot) { return; }
      var root = this.attachShadow({ mode: "open" });
      var style = document.createElement("style");
      style.textContent = "button{font:inherit;font-weight:700;padding:8px 20px;border-radius:4px;border:1px solid #0a6ebd;" +
        "background:#0a6ebd;color:#fff;cursor:pointer}";
      var button = document.createElement("button");
      button.type = "button";
      button.appendChild(document.createElement("slot"));
      root.appendChild(style);
      root.appendChild(button);
      var self = this;
      button.addEventListener("click", function () {
        if (self.getAttribute("form-action") === "submit") {
          var form = self.closest("crowd-form");
          if (form) { form.submit(); }
        }
      });
    }
  }

  customElements.define("crowd-form", CrowdForm);
  customElements.define("crowd-button", CrowdButton);
})();
