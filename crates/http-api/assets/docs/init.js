// Starts Swagger UI on the document this server generates. Relative URLs, so the page works
// behind a path prefix; no validator and no other origin is contacted (the page's CSP forbids it).
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    persistAuthorization: false,
    displayOperationId: true,
    defaultModelsExpandDepth: 0,
  });
});
