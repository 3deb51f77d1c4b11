// Configuration for the official Cube image (docker-compose.yaml mounts this folder at /cube/conf).
// The same tenancy rules as the local server: see tenancy.js.
'use strict';

const { checkAuth, queryRewrite } = require('./tenancy');

module.exports = { checkAuth, queryRewrite };
