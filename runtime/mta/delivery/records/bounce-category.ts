import type { SmtpReply } from '../../../shared/smtp/reply';

import type { BounceCategoryName, BounceRuleConfig } from '../../../shared/config/types';

export type BounceCategory = BounceCategoryName;

interface Rule {
  category: BounceCategory;
  code?: number;
  enhanced?: RegExp;
  text?: RegExp;
}

// Checked in order; the first match wins. Text rules come first because real
// servers often send a generic enhanced code with a telling text.
export const DEFAULT_RULES: Rule[] = [
  { category: 'policy', text: /spam|blocked|blacklist|blocklist|reputation|policy|denied|not allowed|rejected due to|spf|dmarc|dkim/i },
  { category: 'quota', text: /quota|mailbox (is )?full|over ?limit|insufficient (system )?storage/i },
  { category: 'inactive', text: /inactive|disabled|deactivated|suspended|expired account/i },
  { category: 'bad-mailbox', text: /user unknown|no such user|unknown user|does not exist|mailbox unavailable|invalid recipient|recipient not found|unrouteable address/i },
  { category: 'bad-domain', text: /domain not found|no mx|host not found|null mx|does not accept mail/i },
  { category: 'content', text: /content|virus|message (is )?too (big|large)|size/i },
  { category: 'bad-mailbox', enhanced: /^5\.1\.[0126]$/ },
  { category: 'bad-domain', enhanced: /^5\.1\.10$|^5\.1\.2$/ },
  { category: 'quota', enhanced: /^[45]\.2\.2$/ },
  { category: 'inactive', enhanced: /^[45]\.2\.1$/ },
  { category: 'policy', enhanced: /^[45]\.7\.\d+$/ },
  { category: 'content', enhanced: /^[45]\.6\.\d+$|^[45]\.3\.4$/ },
  { category: 'routing', enhanced: /^[45]\.4\.\d+$/ },
  { category: 'protocol', enhanced: /^[45]\.5\.\d+$/ },
];

export function classify(reply: SmtpReply, rules: Rule[] = DEFAULT_RULES): BounceCategory {
  for (const r of rules) {
    if (r.text && r.text.test(reply.text)) return r.category;
    if (r.enhanced && reply.enhanced && r.enhanced.test(reply.enhanced)) return r.category;
  }
  return 'other';
}

/**
 * The operator's rules (from config: every condition given must match)
 * checked first, then the built-in table.
 */
export class BounceClassifier {
  private readonly own: Rule[];

  constructor(rules: BounceRuleConfig[]) {
    this.own = rules.map((r) => ({
      category: r.category,
      code: r.code,
      enhanced: r.enhanced ? new RegExp(`^(?:${r.enhanced})$`, 'i') : undefined,
      text: r.text ? new RegExp(r.text, 'i') : undefined,
    }));
  }

  classify(reply: SmtpReply): BounceCategory {
    for (const r of this.own) {
      if (r.code !== undefined && r.code !== reply.code) continue;
      if (r.enhanced && !(reply.enhanced && r.enhanced.test(reply.enhanced))) continue;
      if (r.text && !r.text.test(reply.text)) continue;
      return r.category;
    }
    return classify(reply);
  }
}
