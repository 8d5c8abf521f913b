// `notifyOnWeights`: the person in an opted-in chat sees which weights answer them. When the
// daemon says another version serves, each opted-in session seen since start gets a one-line
// notice in front of its next reply that the clawrl provider served (the first reply of the new
// version). It rides on `reply_payload_sending`, so it reaches WebChat and every channel alike
// and changes only what is delivered: the transcript, which later prompts and training read,
// keeps the model's own text. OpenClaw's system events (`enqueueSystemEvent`) reach only the
// model's context, and its chat-writing gateway methods are closed to non-bundled plugins.
import type { WeightsUpdatedMessage } from '../protocol/index.ts';
import type { ReplyPayloadSendingEvent, ReplyPayloadSendingResult } from './host-types.ts';

/** The notice for a change of serving version, worded by why it changed. */
export function weightsNotice(msg: Pick<WeightsUpdatedMessage, 'version' | 'reason'>): string {
  const v = msg.version;
  switch (msg.reason ?? 'trained') {
    case 'trained':
      return `[clawrl] New weights ${v}, trained on recent feedback, answer from this reply on.`;
    case 'rollback':
      return `[clawrl] The weights were rolled back: ${v} answers from this reply on.`;
    case 'pin':
      return `[clawrl] The weights were pinned to ${v}, which answers from this reply on.`;
    case 'unpin':
      return `[clawrl] The pin was lifted: the latest weights, ${v}, answer from this reply on.`;
    case 'adopted':
      return `[clawrl] Weights ${v}, added to the daemon by hand, answer from this reply on.`;
  }
}

/**
 * Whether a payload is the model's own reply: OpenClaw flags the others it sends in a run
 * (openclaw@2026.9.6: isError, isReasoning, isCommentary, isCompactionNotice, isFallbackNotice,
 * isStatusNotice, ...), e.g. "↪️ Model Fallback cleared" right before the reply.
 */
function isModelText(payload: NonNullable<ReplyPayloadSendingEvent['payload']>): boolean {
  return !Object.entries(payload).some(([field, value]) => /^is[A-Z]/.test(field) && value === true);
}

export class WeightNotices {
  /** Session key → the notice its next served reply carries (a newer change replaces an unread one). */
  private readonly pending = new Map<string, string>();

  constructor(private readonly provider: string) {}

  /** A new version serves: every given session will hear of it with its next reply. */
  weightsChanged(msg: WeightsUpdatedMessage, sessionKeys: string[]): void {
    const text = weightsNotice(msg);
    for (const key of sessionKeys) this.pending.set(key, text);
  }

  /** The `reply_payload_sending` handler: puts a pending notice in front of a reply this provider served. */
  onReply(event: ReplyPayloadSendingEvent): ReplyPayloadSendingResult | undefined {
    const key = event?.sessionKey;
    const payload = event?.payload;
    // Command replies carry no usageState; another provider's reply is not the new version's.
    if (key === undefined || !payload || event.usageState?.provider !== this.provider || !isModelText(payload)) return undefined;
    const notice = this.pending.get(key);
    if (notice === undefined) return undefined;
    this.pending.delete(key);
    return { payload: { ...payload, text: payload.text ? `${notice}\n\n${payload.text}` : notice } };
  }
}
