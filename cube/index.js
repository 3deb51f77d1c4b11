// Local Cube.js server for the demo and the tests (Cube 0.33: runs without native binaries).
//
// Listens on 127.0.0.1 only (the cubejs-server CLI binds every interface) and enforces tenancy:
// every JWT must carry an integer `organization_id`, and every query is rewritten so each cube it
// touches is filtered on that organization. Configuration comes from CUBEJS_* env variables
// (see ../devstack/cube.py); NODE_ENV=production is required, or Cube accepts requests without a token.
'use strict';

const express = require('express');
const CubejsServer = require('@cubejs-backend/server');
const { checkAuth, queryRewrite } = require('./tenancy');

const host = process.env.CUBEJS_HOST || '127.0.0.1';
const port = Number(process.env.PORT || 4000);
const apiSecret = process.env.CUBEJS_API_SECRET;
// Integer seconds (Cube validates it): how long /load holds a request before answering "Continue wait".
const continueWaitTimeout = Number(process.env.KPI_CUBE_CONTINUE_WAIT_TIMEOUT || 5);

if (!apiSecret) {
  console.error('CUBEJS_API_SECRET is required');
  process.exit(2);
}

const server = new CubejsServer({
  apiSecret,
  checkAuth,
  queryRewrite,
  webSockets: false,
  orchestratorOptions: {
    continueWaitTimeout,
    // Seconds a refresh key's own answer is reused. With the model's data-driven refresh keys and
    // renewQuery, 1 s means an alert sees rows added a second ago (Cube's default is 10 s).
    queryCacheOptions: { refreshKeyRenewalThreshold: Number(process.env.KPI_CUBE_REFRESH_KEY_RENEWAL_THRESHOLD || 1) },
  },
});

const app = express();
app.disable('x-powered-by');
// Who started this server: the devstack reuses a server on its port only if the owner is its own
// (another checkout's stack may be listening there).
app.get('/kpi-devstack/owner', (req, res) => res.json({ owner: process.env.KPI_DEVSTACK_OWNER || null }));

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
