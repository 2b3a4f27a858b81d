// GraphiQL on /api/graphql/ (DEBUG only): every file served by this service, none from a CDN.
// Requests go as the logged-in person (the session cookie, with its CSRF token).
(function () {
  "use strict";
  const root = document.getElementById("graphiql");
  const fetcher = GraphiQL.createFetcher({
    url: root.dataset.url,
    headers: { "X-CSRFToken": root.dataset.csrf },
  });
  const example = [
    "# The REST reports' names in camelCase, e.g.:",
    "{",
    "  stats(currency: \"USD\") { totalOutcomes winRate totalRevenue ecpm }",
    "  breakdown(by: site_domain, limit: 5) { rows { value wins revenue } }",
    "  outcomes(first: 3) { edges { node { bidId winPrice } } pageInfo { endCursor hasNextPage } }",
    "}",
    "",
  ].join("\n");
  ReactDOM.createRoot(root).render(
    React.createElement(GraphiQL, { fetcher: fetcher, defaultQuery: example, shouldPersistHeaders: false }),
  );
})();
