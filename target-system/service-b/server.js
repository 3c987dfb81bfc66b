// Service B: GET /ping (called by service A) and GET /healthz.
// Fault injection, off by default: per request `?delay_ms=N` and `?fail=1`; per process
// FAULT_DELAY_MS and FAULT_ERROR_RATE (0..1).
const express = require('express');

const app = express();
const faultDelay = Number(process.env.FAULT_DELAY_MS || 0);
const faultErrorRate = Number(process.env.FAULT_ERROR_RATE || 0);

app.get('/ping', (req, res) => {
  const delay = faultDelay + Number(req.query.delay_ms || 0);
  setTimeout(() => {
    if (req.query.fail === '1' || (faultErrorRate > 0 && Math.random() < faultErrorRate)) {
      res.status(500).json({ error: 'injected failure' });
      return;
    }
    res.json({ pong: true });
  }, Math.max(0, delay));
});

app.get('/healthz', (_req, res) => res.send('ok\n'));

const port = Number(process.env.PORT || 3001);
app.listen(port, process.env.HOST || '0.0.0.0', () => {
  console.log(`service-b listening on ${port}`);
});
