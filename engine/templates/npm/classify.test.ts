import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Config, Request, Response } from '@postwire/plugin-sdk';
import { classify } from '../src/plugin';

test('reads the answer', () => {
  const request = new Request('POST', 'https://partner.example/pb');
  const config = new Config('{}');
  assert.equal(classify(request, new Response(200, { body: 'ok' }), config).tag, 'success');
  assert.equal(classify(request, new Response(200, { body: 'error' }), config).tag, 'retry');
  assert.equal(classify(request, new Response(503), config).tag, 'retry');
});
