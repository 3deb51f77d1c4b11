// Configuration for the official Cube image (docker-compose.yaml mounts this folder at /cube/conf).
// The same tenancy rules and cache freshness as the local server (index.js): see tenancy.js.
'use strict';

const { checkAuth, queryRewrite } = require('./tenancy');

module.exports = {
  checkAuth,
  queryRewrite,
  // With the model's data-driven refresh keys and the client's renewQuery, alerts see new rows within
  // a second (Cube re-checks a refresh key at most this often; its default is 10 s).
  orchestratorOptions: { queryCacheOptions: { refreshKeyRenewalThreshold: 1 } },
};
