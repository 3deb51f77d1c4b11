// Local Cube.js server for the demo and the tests (Cube 0.33: runs without native binaries).
//
// Listens on 127.0.0.1 only (the cubejs-server CLI binds every interface) and enforces tenancy:
// every JWT must carry an integer `organization_id`, and every query is rewritten so each cube it
// touches is filtered on that organization. Configuration comes from CUBEJS_* env variables
// (see ../devstack/cube.py); NODE_ENV=production is required, or Cube accepts requests without a token.
'use strict';

const express = require('express');
const jwt = require('jsonwebtoken');
const CubejsServer = require('@cubejs-backend/server');
const { CubejsHandlerError } = require('@cubejs-backend/api-gateway');

const host = process.env.CUBEJS_HOST || '127.0.0.1';
const port = Number(process.env.PORT || 4000);
const apiSecret = process.env.CUBEJS_API_SECRET;
// Integer seconds (Cube validates it): how long /load holds a request before answering "Continue wait".
const continueWaitTimeout = Number(process.env.KPI_CUBE_CONTINUE_WAIT_TIMEOUT || 5);

if (!apiSecret) {
  console.error('CUBEJS_API_SECRET is required');
  process.exit(2);
}

function forbidden(message) {
  return new CubejsHandlerError(403, 'Forbidden', message);
}

// Replaces Cube's default check: same HS256 verification, plus a mandatory tenant.
async function checkAuth(req, auth) {
  if (!auth) {
    throw forbidden("Authorization header isn't set");
  }
  let payload;
  try {
    payload = jwt.verify(auth, apiSecret, { algorithms: ['HS256'] });
  } catch (e) {
    throw forbidden('Invalid token');
  }
  if (!payload || !Number.isSafeInteger(payload.organization_id)) {
    throw forbidden('Security context must contain an integer organization_id');
  }
  req.securityContext = payload;
}

// Every cube name a query mentions, including nested and/or filters.
function cubesOf(query) {
  const names = new Set();
  const add = (member) => {
    if (typeof member === 'string' && member.includes('.')) names.add(member.split('.')[0]);
  };
  (query.measures || []).forEach(add);
  (query.dimensions || []).forEach(add);
  (query.segments || []).forEach(add);
  (query.timeDimensions || []).forEach((td) => add(td.dimension));
  const walk = (filters) => (filters || []).forEach((f) => {
    add(f.member || f.dimension);
    walk(f.and);
    walk(f.or);
  });
  walk(query.filters);
  return names;
}

function queryRewrite(query, { securityContext }) {
  const org = securityContext && securityContext.organization_id;
  if (!Number.isSafeInteger(org)) {
    throw forbidden('Security context must contain an integer organization_id');
  }
  const tenantFilters = [...cubesOf(query)].map((cube) => ({
    member: `${cube}.organization_id`,
    operator: 'equals',
    values: [String(org)],
  }));
  // Top-level filters are AND-ed: a user filter asking for another organization yields no rows.
  return { ...query, filters: [...(query.filters || []), ...tenantFilters] };
}

const server = new CubejsServer({
  apiSecret,
  checkAuth,
  queryRewrite,
  webSockets: false,
  orchestratorOptions: { continueWaitTimeout },
});

const app = express();
app.disable('x-powered-by');

(async () => {
  await server.core.initApp(app);
  const http = app.listen(port, host, () => {
    console.log(`Cube.js ${CubejsServer.version()} listening on http://${host}:${port}`);
  });
  const stop = () => http.close(() => server.close().finally(() => process.exit(0)));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
