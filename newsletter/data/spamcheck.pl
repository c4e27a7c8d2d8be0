# SpamAssassin's local tests on one message read from stdin; prints SpamAssassin's report.
#
# The stock `spamassassin` script reads the whole message before it loads a single rule,
# so starting it early gains little. This loads the rules and scores a tiny message first
# (SpamAssassin finishes compiling its rules on the first check), THEN waits for stdin:
# `newsletter preview` starts it before its own imports, and by the time the issue is
# rendered only the scoring of this one message is left (newsletter/spamproc.py).
#
# Arguments: PREFIX DEF_RULES_DIR LOCAL_RULES_DIR LOCAL_STATE_DIR, as in the spamassassin
# script found on PATH. The options match `spamassassin --local --test-mode
# --nocreate-prefs --cf='use_bayes 0'`: no network, no Bayes, no learning, no prefs written.
use strict;
use warnings;
use Mail::SpamAssassin;

my ($prefix, $def_rules, $local_rules, $state) = @ARGV;
my $spamtest = Mail::SpamAssassin->new({
  local_tests_only => 1,
  dont_copy_prefs  => 1,
  post_config_text => "use_bayes 0\n",
  require_rules    => 1,
  PREFIX           => $prefix,
  DEF_RULES_DIR    => $def_rules,
  LOCAL_RULES_DIR  => $local_rules,
  LOCAL_STATE_DIR  => $state,
});
# What --test-mode does: no auto-welcomelist, no Bayes autolearning.
$spamtest->{'conf'}->{'use_auto_welcomelist'} = 0;
$spamtest->{'conf'}->{'bayes_auto_learn'} = 0;
$spamtest->init(1);

sub score {
  my ($text) = @_;
  my $mail = $spamtest->parse($text);
  my $status = $spamtest->check($mail);
  my $report = $status->get_report();
  $status->finish();
  $mail->finish();
  return $report;
}

score("From: warm-up\@example.org\nSubject: warm-up\nContent-Type: text/html\n\n<p>warm-up</p>\n");
binmode STDIN;
my $message = do { local $/; <STDIN> };
print score($message) or die "error writing: $!";
$spamtest->finish();
