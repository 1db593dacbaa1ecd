import http from 'node:http';
import { PortInUseError, startHealthServer } from '../src';

describe('a taken port', () => {
  test('is a one-line PortInUseError naming the port and the setting', async () => {
    const first = await startHealthServer({ port: 0, host: '127.0.0.1', checks: {} });
    try {
      const attempt = startHealthServer({ port: first.port, host: '127.0.0.1', checks: {} });
      await expect(attempt).rejects.toBeInstanceOf(PortInUseError);
      await expect(attempt).rejects.toThrow(`port ${first.port} is already in use (another copy running?); stop it or set HEALTH_PORT to a free port`);
    } finally {
      await first.close();
    }
  });

  test('the server still works after a successful listen (no stale error listener)', async () => {
    const server = await startHealthServer({ port: 0, host: '127.0.0.1', checks: {} });
    try {
      const body = await new Promise<string>((resolve, reject) => {
        http.get(`http://127.0.0.1:${server.port}/healthz`, (res) => {
          let text = '';
          res.on('data', (c) => (text += c));
          res.on('end', () => resolve(text));
        }).on('error', reject);
      });
      expect(JSON.parse(body)).toEqual({ status: 'ok' });
    } finally {
      await server.close();
    }
  });
});
