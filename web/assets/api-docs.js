// The API description viewer: swagger-ui (vendored, no network beyond niledr) on the live
// document. The document needs a principal: the console's session cookie is sent with it, and
// without one the page says how to get it instead of showing swagger-ui's bare "Unauthorized".
function showDocument(spec) {
  window.ui = SwaggerUIBundle({
    spec,
    dom_id: "#api",
    deepLinking: true,
    validatorUrl: "none",
    tryItOutEnabled: false,
  });
}

function explain(status, text) {
  const box = document.getElementById("api");
  const p = (t) => { const e = document.createElement("p"); e.textContent = t; box.appendChild(e); return e; };
  box.style.cssText = "font-family: sans-serif; max-width: 48rem; margin: 2rem auto";
  if (status === 401) {
    p("The API description needs a principal (viewer or above), like every read of niledr's API.");
    const a = document.createElement("a");
    a.href = "/#/sign-in";
    a.textContent = "Sign in to the console";
    p("").append(a, " in this browser, then reload this page; or fetch the document with a token:");
    p("curl -H 'Authorization: Bearer <token>' " + location.origin + "/api/v1/openapi.json").style.fontFamily = "monospace";
  } else {
    p(`GET /api/v1/openapi.json answered ${status}: ${text}`);
  }
}

fetch("/api/v1/openapi.json", { credentials: "same-origin" })
  .then(async (r) => (r.ok ? showDocument(await r.json()) : explain(r.status, await r.text())))
  .catch((e) => explain(0, String(e)));
