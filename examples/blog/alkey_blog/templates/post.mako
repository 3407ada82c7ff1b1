## One post.  The page is cached under a key naming the post: it renders
## again only after a commit that changed the post.
<%inherit file="layout.mako"/>
<%page cached="True" cache_key="${request.cache_key(1, self.uri, post)}"/>
<%def name="title()">${post.title}</%def>
<article id="post">
  <h1>${post.title}</h1>
% for paragraph in post.body.split('\n\n'):
  <p>${paragraph}</p>
% endfor
</article>
<p><a href="${request.route_path('edit', id=post.id)}">Edit this post</a></p>
<p class="renders">post rendered ${rendered('post', post.id)}×</p>
