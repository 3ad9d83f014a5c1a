// Swagger UI over the service's own document. "Authorize" takes an API key (kept in this page's
// memory only); "Try it out" then calls the API from this page, on the same origin.
"use strict";
window.ui = SwaggerUIBundle({
  url: "/api/v1/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  displayOperationId: true,
  persistAuthorization: false,
  validatorUrl: null, // the default asks a public validator over the internet
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});
