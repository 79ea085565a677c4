import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Config, Event, Request } from '@postwire/plugin-sdk';
import { transform } from '../src/plugin';

test('adds the order id and the configured tag', () => {
  const event = new Event('evt_1', 'action_inquiry.created').withField('OrderId', 'ORD-1');
  const request = new Request('POST', 'https://partner.example/pb', { body: '{}' });
  const out = transform(event, request, new Config('{"tag":"spring"}'));
  assert.equal(out.header('X-Order-Id'), 'ORD-1');
  assert.equal(out.header('X-Tag'), 'spring');
  assert.equal(out.body, '{}');
});
