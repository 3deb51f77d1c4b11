// Tenancy rules shared by the local server (index.js) and the official image's config (cube.js):
// every JWT must carry an integer `organization_id`, and every query is rewritten so that each
// cube it touches is filtered on that organization.
'use strict';

const jwt = require('jsonwebtoken');
const { CubejsHandlerError } = require('@cubejs-backend/api-gateway');

function apiSecret() {
  return process.env.CUBEJS_API_SECRET;
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
    payload = jwt.verify(auth, apiSecret(), { algorithms: ['HS256'] });
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

module.exports = { checkAuth, queryRewrite };
