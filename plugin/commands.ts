// `/clawrl on|off|status|good|bad|hint <text>`: per-session opt-in and explicit feedback. The
// handler answers from memory; whatever it sends goes through the spool like any event.
import type { Capture } from './capture.ts';
import type { CommandContext, CommandDefinition, CommandResult } from './host-types.ts';
import type { LinkStatus } from './link.ts';

const USAGE = 'usage: /clawrl on | off | status | good | bad | hint <what the agent should have done>';

function describeLink(status: LinkStatus | undefined): string[] {
  if (!status) return ['daemon: not connected yet (no event captured since start)'];
  const lines = [
    `daemon: ${status.state} (${status.url})${status.lastError && status.state !== 'connected' ? ` — ${status.lastError}` : ''}`,
    `weights: ${status.weightVersion ?? 'unknown'}`,
    `events: ${status.pending} spooled, ${status.sent} sent, ${status.acked} acknowledged since start`,
  ];
  if (status.dropped > 0) lines.push(`events dropped because the spool was full: ${status.dropped}`);
  return lines;
}

export function clawrlCommand(capture: Capture, linkStatus: () => LinkStatus | undefined): CommandDefinition {
  const handle = (ctx: CommandContext): CommandResult => {
    const args = (ctx.args ?? '').trim();
    const verb = args.split(/\s+/, 1)[0] || 'status';
    const sessionKey = ctx.sessionKey;
    if (verb === 'status') {
      const optIn = sessionKey === undefined ? 'no session' : capture.isOptedIn(sessionKey) ? 'opted in' : 'not opted in (/clawrl on)';
      return { text: [`clawrl — this session: ${optIn}`, ...describeLink(linkStatus())].join('\n') };
    }
    if (sessionKey === undefined) return { text: 'clawrl: this command needs a session.' };
    switch (verb) {
      case 'on':
        capture.setOptIn(sessionKey, true);
        return { text: 'clawrl: this session is now captured for training. /clawrl off stops it.' };
      case 'off':
        capture.setOptIn(sessionKey, false);
        return { text: 'clawrl: this session is no longer captured.' };
      case 'good':
      case 'bad':
        return capture.feedback(sessionKey, { rating: verb })
          ? { text: `clawrl: noted, the last turn was ${verb}.` }
          : { text: 'clawrl: this session is not captured; /clawrl on first.' };
      case 'hint': {
        const hint = args.slice(verb.length).trim();
        if (!hint) return { text: USAGE };
        return capture.feedback(sessionKey, { hint })
          ? { text: 'clawrl: hint noted for the last turn.' }
          : { text: 'clawrl: this session is not captured; /clawrl on first.' };
      }
      default:
        return { text: USAGE };
    }
  };
  return {
    name: 'clawrl',
    description: 'clawrl: capture this session for training (on/off), show status, or rate the last turn (good/bad/hint)',
    acceptsArgs: true,
    handler: (ctx) => {
      try {
        return handle(ctx ?? {});
      } catch (err) {
        return { text: `clawrl: ${(err as Error).message}` };
      }
    },
  };
}
