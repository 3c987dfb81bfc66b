// Service B: GET /ping (called by service A) and GET /healthz.
// Fault injection, off by default: per request `?delay_ms=N` and `?fail=1`; per process
// FAULT_DELAY_MS and FAULT_ERROR_RATE (0..1). Logs with pino (bridged to OpenTelemetry by
// tracing.js): an INFO line per ping served, an ERROR line per failure.
const express = require('express');
const logger = require('pino')();

const app = express();
const faultDelay = Number(process.env.FAULT_DELAY_MS || 0);
const faultErrorRate = Number(process.env.FAULT_ERROR_RATE || 0);

app.get('/ping', (req, res) => {
  const delay = faultDelay + Number(req.query.delay_ms || 0);
  const began = Date.now();
  setTimeout(() => {
    if (req.query.fail === '1' || (faultErrorRate > 0 && Math.random() < faultErrorRate)) {
      logger.error('injected failure answering /ping');
      res.status(500).json({ error: 'injected failure' });
      return;
    }
    logger.info('/ping served in %d ms', Date.now() - began);
    res.json({ pong: true });
  }, Math.max(0, delay));
});

app.get('/healthz', (_req, res) => res.send('ok\n'));

const port = Number(process.env.PORT || 3001);
app.listen(port, process.env.HOST || '0.0.0.0', () => {
  logger.info(`service-b listening on ${port}`);
});
