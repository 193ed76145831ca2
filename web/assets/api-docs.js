// The API description viewer: swagger-ui (vendored, no network beyond niledr) on the live
// document. The document needs a principal: the console's session cookie is sent with it.
window.ui = SwaggerUIBundle({
  url: "/api/v1/openapi.json",
  dom_id: "#api",
  deepLinking: true,
  validatorUrl: "none",
  tryItOutEnabled: false,
});
