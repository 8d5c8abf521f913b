// Test only (test/openclaw-gateway.test.ts): records every message OpenClaw is about to deliver to a
// chat (`message_sending` sees the reply after other plugins' `reply_payload_sending` changed it),
// one JSON line per message in $CLAWRL_TEST_CHAT_LOG. WebChat's live view shows exactly this text;
// the gateway test has no WebChat client to look with.
import { appendFileSync } from 'node:fs';

export default {
  id: 'clawrl-test-chat-observer',
  name: 'clawrl test chat observer',
  description: 'Records what OpenClaw delivers to each chat.',
  register(api) {
    const file = process.env.CLAWRL_TEST_CHAT_LOG;
    if (!file) return;
    api.on('message_sending', (event, ctx) => {
      appendFileSync(file, JSON.stringify({ sessionKey: ctx?.sessionKey ?? event?.to, content: event?.content }) + '\n');
      return undefined;
    });
  },
};
