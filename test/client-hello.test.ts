import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseClientHello } from '../src/dataplane/client-hello.js';
import { captureClientHello } from './helpers/client-hello.js';

test('reads SNI and ALPN from a real ClientHello', async () => {
  const bytes = await captureClientHello({ servername: 'Abc.T.Example.COM', ALPNProtocols: ['rstrm/1', 'http/1.1'] });
  const parsed = parseClientHello(bytes);
  assert.equal(parsed.status, 'complete');
  assert.deepEqual(parsed.status === 'complete' && parsed.hello, {
    serverName: 'abc.t.example.com',
    alpnProtocols: ['rstrm/1', 'http/1.1'],
  });
});

test('a hello without SNI or ALPN reports both as absent', async () => {
  const bytes = await captureClientHello({ servername: '' });
  const parsed = parseClientHello(bytes);
  assert.deepEqual(parsed, { status: 'complete', hello: { serverName: undefined, alpnProtocols: undefined } });
});

test('every prefix of a real hello is incomplete, and bytes fed one at a time complete it', async () => {
  const bytes = await captureClientHello({ servername: 'edge.example.com', ALPNProtocols: ['h2'] });
  for (let length = 0; length < bytes.length; length++) {
    assert.equal(parseClientHello(bytes.subarray(0, length)).status, 'incomplete', `prefix of ${length} bytes`);
  }
  assert.equal(parseClientHello(bytes).status, 'complete');
});

test('a hello split across several TLS records is reassembled', async () => {
  const bytes = await captureClientHello({ servername: 'split.example.com', ALPNProtocols: ['http/1.1'] });
  const body = bytes.subarray(5, 5 + bytes.readUInt16BE(3));
  const records: Buffer[] = [];
  for (let offset = 0; offset < body.length; offset += 50) {
    const fragment = body.subarray(offset, offset + 50);
    const header = Buffer.from([22, 3, 1, 0, 0]);
    header.writeUInt16BE(fragment.length, 3);
    records.push(header, fragment);
  }
  const parsed = parseClientHello(Buffer.concat(records));
  assert.equal(parsed.status, 'complete');
  assert.equal(parsed.status === 'complete' && parsed.hello.serverName, 'split.example.com');
});

test('non-TLS bytes, a truncated body and an oversized hello are invalid', () => {
  assert.equal(parseClientHello(Buffer.from('GET / HTTP/1.1\r\n')).status, 'invalid');
  assert.equal(parseClientHello(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 0x02, 0, 0, 1, 0])).status, 'invalid');
  // A record that claims a 4-byte ClientHello whose body cannot hold the fixed fields.
  assert.equal(parseClientHello(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x08, 0x01, 0, 0, 4, 3, 3, 0, 0])).status, 'invalid');
  const huge = Buffer.from([0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x00, 0x50, 0x00]);
  assert.equal(parseClientHello(huge).status, 'invalid');
});
