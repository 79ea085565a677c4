import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Config, Event, Request, Response } from '@postwire/plugin-sdk';
import { classify, transform } from '../src/plugin.js';

test('transforms and classifies', () => {
  const event = new Event('evt_1', 'action_inquiry.created').withField('OrderId', 'ORD-1');
  const out = transform(event, new Request('POST', 'https://partner.example/pb'), new Config('{}'));
  assert.equal(out.header('X-Order-Id'), 'ORD-1');
  assert.equal(classify(out, new Response(204), new Config('{}')).tag, 'success');
});
