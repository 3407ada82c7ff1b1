## The frame of every page.  Not cached: only the pages' bodies are.
<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>${self.title()} · alkey blog</title>
  <style>
    body { font: 16px/1.5 system-ui, sans-serif; max-width: 42rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
    header a { font-weight: bold; text-decoration: none; color: #444; }
    .card { border: 1px solid #ddd; border-radius: 6px; padding: 0 1rem; margin: 1rem 0; }
    .renders { color: #888; font-size: .8rem; }
    label { display: block; margin-top: 1rem; }
    input[type=text], textarea { width: 100%; font: inherit; }
    .error { color: #b00; }
  </style>
</head>
<body>
  <header><a href="${request.route_path('home')}">alkey blog</a></header>
  <main>
${next.body()}
  </main>
</body>
</html>
<%def name="title()">alkey blog</%def>
