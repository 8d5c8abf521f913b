// `/clawrl on|off|status|good|bad|hint <text>`: per-session opt-in and explicit feedback;
// `/clawrl hints|forget <id>`: what hint memory gives this session, and dropping a hint. The
// handler answers from memory; whatever it sends goes through the spool like any event (forget
// alone calls the daemon, since it must act even for sessions that send nothing).
import type { Capture } from './capture.ts';
import { hintScopeOf, type HintCache } from './hints.ts';
import type { CommandContext, CommandDefinition, CommandResult } from './host-types.ts';
import type { LinkStatus } from './link.ts';

const USAGE = 'usage: /clawrl on | off | status | good | bad | hint <what the agent should have done> | hints | forget <hint id>';
/** Hints listed by `/clawrl hints`; `clawrl-daemon hints list` shows them all. */
const LISTED_HINTS = 20;

export function describeLink(status: LinkStatus | undefined): string[] {
  if (!status) return ['daemon: not connected yet (no event captured since start)'];
  const lines = [
    `daemon: ${status.state}${status.retryAt ? `, next try in ${Math.max(0, Math.ceil((status.retryAt - Date.now()) / 1000))} s` : ''} (${status.url})${status.lastError && status.state !== 'connected' ? ` — ${status.lastError}` : ''}`,
    `weights: ${status.weightVersion ?? 'unknown'}`,
    `events: ${status.pending} spooled, ${status.sent} sent, ${status.acked} acknowledged since start`,
  ];
  if (status.dropped > 0) lines.push(`events dropped because the spool was full: ${status.dropped}`);
  if (status.quarantined > 0) {
    const last = status.lastQuarantineReason ? `last: ${status.lastQuarantineReason}` : 'none since start';
    lines.push(`events set aside, never to be stored: ${status.quarantined} (${last}; kept in ${status.quarantineFile})`);
  }
  return lines;
}

async function listHints(hints: HintCache, sessionKey: string): Promise<CommandResult> {
  await hints.ready();
  const { agent } = hintScopeOf({ sessionKey });
  const all = hints.inScope(agent, sessionKey);
  if (all.length === 0) return { text: 'clawrl: no hints for this session yet.' };
  const lines = all.slice(0, LISTED_HINTS).map((h) => `${h.id} (weight ${h.weight.toFixed(2)}): ${h.text}`);
  if (all.length > LISTED_HINTS) lines.push(`… and ${all.length - LISTED_HINTS} more (clawrl-daemon hints list)`);
  return { text: [`clawrl — hints for this session (strongest first; /clawrl forget <id> drops one):`, ...lines].join('\n') };
}

async function forgetHint(hints: HintCache, id: string): Promise<CommandResult> {
  return (await hints.forget(id)) === 'removed' ? { text: `clawrl: forgot hint ${id}.` } : { text: `clawrl: there is no hint ${id}.` };
}

export function clawrlCommand(capture: Capture, linkStatus: () => LinkStatus | undefined, hints: HintCache): CommandDefinition {
  const handle = (ctx: CommandContext): CommandResult | Promise<CommandResult> => {
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
        return {
          text:
            'clawrl: this session is captured for training from here on: your next messages, the replies and what follows them. ' +
            'Each stored reply keeps the context the model answered in, which includes this conversation so far. /clawrl off stops it.',
        };
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
      case 'hints':
        return listHints(hints, sessionKey);
      case 'forget': {
        const id = args.slice(verb.length).trim();
        return id ? forgetHint(hints, id) : { text: USAGE };
      }
      default:
        return { text: USAGE };
    }
  };
  return {
    name: 'clawrl',
    description: 'clawrl: capture this session for training (on/off), show status, rate the last turn (good/bad/hint), list or forget learned hints',
    acceptsArgs: true,
    handler: (ctx) => {
      const failed = (err: unknown): CommandResult => ({ text: `clawrl: ${(err as Error).message}` });
      try {
        const result = handle(ctx ?? {});
        return result instanceof Promise ? result.catch(failed) : result;
      } catch (err) {
        return failed(err);
      }
    },
  };
}
